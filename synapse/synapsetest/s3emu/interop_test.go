package s3emu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerClients runs rclone (aws-sdk-go v1) and the AWS CLI (botocore)
// against the endpoint with vended credentials, when they are installed:
// benchmarks compare synfs with them, so they must work as against S3.
// s3fs needs a FUSE mount and is not run here.
func TestPeerClients(t *testing.T) {
	e := newEnv(t, false)
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	data := randomBytes(7<<20, 11)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	awsConfig := filepath.Join(dir, "aws.cfg")
	if err := os.WriteFile(awsConfig, []byte("[default]\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := writeGrant
	rcloneEnv := []string{
		"RCLONE_CONFIG=" + filepath.Join(dir, "rclone.conf"),
		"RCLONE_CONFIG_EMU_TYPE=s3", "RCLONE_CONFIG_EMU_PROVIDER=Other", "RCLONE_CONFIG_EMU_ENDPOINT=" + e.ts.URL,
		"RCLONE_CONFIG_EMU_FORCE_PATH_STYLE=true", "RCLONE_CONFIG_EMU_REGION=us-east-1",
		"RCLONE_CONFIG_EMU_ACCESS_KEY_ID=" + g.AccessKeyID, "RCLONE_CONFIG_EMU_SECRET_ACCESS_KEY=" + g.SecretAccessKey,
		"RCLONE_CONFIG_EMU_SESSION_TOKEN=" + g.SessionToken,
	}
	awsEnv := []string{
		"AWS_ACCESS_KEY_ID=" + g.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + g.SecretAccessKey, "AWS_SESSION_TOKEN=" + g.SessionToken,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=" + awsConfig, "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
	}
	remote := "emu:" + bucket + "/" + baseKey
	s3url := "s3://" + bucket + "/" + baseKey
	cases := []struct {
		name   string
		tool   string
		env    []string
		args   []string
		ok     bool
		output string // expected in the combined output
		stored string // key whose content must equal data afterwards
	}{
		{"rclone lists the prefix", "rclone", rcloneEnv, []string{"lsf", remote}, true, "data.bin\nowner.txt\nsub/", ""},
		// rclone HEADs a destination before writing it, and S3 answers
		// vended credentials 403 for a missing key, as it does here:
		// --no-check-dest skips that HEAD.
		{"rclone puts", "rclone", rcloneEnv, []string{"copyto", "--s3-no-check-bucket", "--no-check-dest", local, remote + "/rclone.bin"}, true, "", baseKey + "/rclone.bin"},
		{"rclone puts in parts", "rclone", rcloneEnv, []string{"copyto", "--s3-no-check-bucket", "--no-check-dest", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", local, remote + "/rclone-mp.bin"}, true, "", baseKey + "/rclone-mp.bin"},
		{"rclone checking a missing destination is refused", "rclone", rcloneEnv, []string{"copyto", "--s3-no-check-bucket", local, remote + "/checked.bin"}, false, "403", ""},
		{"rclone reads", "rclone", rcloneEnv, []string{"cat", remote + "/sub/small.txt"}, true, "small", ""},
		{"rclone cannot list the bucket", "rclone", rcloneEnv, []string{"lsf", "emu:" + bucket}, false, "AccessDenied", ""},
		{"rclone cannot write outside", "rclone", rcloneEnv, []string{"copyto", "--s3-no-check-bucket", local, "emu:" + bucket + "/9999/x.bin"}, false, "403", ""}, // a HEAD first: no body, no code
		{"aws cli puts in parts", "aws", awsEnv, []string{"--endpoint-url", e.ts.URL, "s3", "cp", "--only-show-errors", local, s3url + "/aws.bin"}, true, "", baseKey + "/aws.bin"},
		{"aws cli puts with an ACL", "aws", awsEnv, []string{"--endpoint-url", e.ts.URL, "s3api", "put-object", "--bucket", bucket, "--key", baseKey + "/acl.bin",
			"--body", local, "--acl", "bucket-owner-full-control"}, true, "ETag", baseKey + "/acl.bin"},
		{"aws cli lists", "aws", awsEnv, []string{"--endpoint-url", e.ts.URL, "s3", "ls", s3url + "/sub/"}, true, "small.txt", ""},
		{"aws cli cannot read owner.txt", "aws", awsEnv, []string{"--endpoint-url", e.ts.URL, "s3", "cp", s3url + "/owner.txt", filepath.Join(dir, "o")}, false, "403", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, err := exec.LookPath(tc.tool)
			if err != nil {
				t.Skipf("%s not installed", tc.tool)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, tc.args...)
			cmd.Env = append(cleanEnv(), tc.env...)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok || !strings.Contains(string(out), tc.output) {
				t.Fatalf("%s %s: err=%v, want success=%v and %q in output:\n%s", tc.tool, strings.Join(tc.args, " "), err, tc.ok, tc.output, out)
			}
			if tc.stored != "" {
				got, err := e.srv.GetObject(ctx, bucket, tc.stored)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("stored %d bytes at %s, %v; want the %d bytes sent", len(got), tc.stored, err, len(data))
				}
			}
		})
	}
}

// cleanEnv drops the machine's AWS and rclone settings (AWS_CA_BUNDLE
// breaks rclone; profiles would override the test's keys).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "RCLONE_") {
			env = append(env, kv)
		}
	}
	return env
}
