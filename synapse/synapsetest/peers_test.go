package synapsetest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/synfs/synfs/synapse/synapsetest"
)

// peer finds a third-party S3 client. CI installs them (.ci/run) and sets
// SYNFS_REQUIRE_PEERS=1 so that a missing one fails there instead of
// skipping.
func peer(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SYNFS_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is not installed and SYNFS_REQUIRE_PEERS=1", name)
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, name)
	}
	return p
}

// TestRcloneReadsWithAdminKey: a peer S3 client sees the emulator's objects
// byte for byte, so benchmarks can compare like with like.
func TestRcloneReadsWithAdminKey(t *testing.T) {
	rclone := peer(t, "rclone")
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	dir := t.TempDir()
	want := strings.Repeat("0123456789abcdef", 4096) + "tail"
	if err := os.MkdirAll(dir+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/sub/data.bin", []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	imp, err := srv.Import(t.Context(), "peers", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	env := append(withoutAWSEnv(),
		"RCLONE_CONFIG_EMU_TYPE=s3",
		"RCLONE_CONFIG_EMU_PROVIDER=Other",
		"RCLONE_CONFIG_EMU_ENDPOINT="+srv.S3Endpoint,
		"RCLONE_CONFIG_EMU_ACCESS_KEY_ID="+srv.AdminAccessKeyID,
		"RCLONE_CONFIG_EMU_SECRET_ACCESS_KEY="+srv.AdminSecretAccessKey,
		"RCLONE_CONFIG_EMU_FORCE_PATH_STYLE=true",
		"RCLONE_CONFIG_EMU_REGION=us-east-1",
		"RCLONE_CONFIG=/dev/null",
	)
	run := func(args ...string) string {
		cmd := exec.CommandContext(t.Context(), rclone, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("rclone %v: %v\n%s", args, err, stderr)
		}
		return string(out)
	}
	listing := run("lsf", "-R", "emu:"+imp.Bucket+"/"+imp.BaseKey)
	if !strings.Contains(listing, "/data.bin") {
		t.Fatalf("rclone lsf does not show data.bin:\n%s", listing)
	}
	var key string
	for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
		if strings.HasSuffix(l, "/data.bin") {
			key = imp.BaseKey + "/" + l
		}
	}
	if got := run("cat", "emu:"+imp.Bucket+"/"+key); got != want {
		t.Fatalf("rclone cat: %d bytes, want %d equal bytes", len(got), len(want))
	}
	if got := run("cat", "--offset", "16", "--count", "10", "emu:"+imp.Bucket+"/"+key); got != "0123456789" {
		t.Fatalf("rclone ranged cat = %q", got)
	}
}

// withoutAWSEnv drops the machine's AWS_* settings (a CA bundle among them)
// that would send a peer to real AWS habits instead of the emulator.
func withoutAWSEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}
