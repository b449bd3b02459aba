package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevServer runs `synfs dev-server --import` as a script would: read the
// one JSON line, then call the user profile with the printed token, and
// stop it with a cancel (SIGINT in real use).
func TestDevServer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		code := devServer(ctx, []string{"--import", "sample=" + dir, "--import-external", "outbox=" + dir, "--rest-latency", "1ms"}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the ready line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var ready devServerReady
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	if !strings.HasPrefix(ready.Folders["sample"], "syn") || !strings.HasPrefix(ready.Folders["outbox"], "syn") || ready.AdminAccessKeyID == "" || ready.S3Endpoint == "" {
		t.Fatalf("ready line lacks fields: %s", line)
	}

	req, _ := http.NewRequest("GET", ready.RepoEndpoint+"/userProfile", nil)
	req.Header.Set("Authorization", "Bearer "+ready.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var profile struct{ OwnerID, UserName string }
	json.NewDecoder(resp.Body).Decode(&profile)
	resp.Body.Close()
	if resp.StatusCode != 200 || profile.UserName == "" || profile.OwnerID == "273950" {
		t.Fatalf("user profile: %d %+v", resp.StatusCode, profile)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after interrupt, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dev-server did not stop on interrupt")
	}
}

func TestDevServerBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--import", "nodir"}, {"--bogus"}, {"extra-arg"}} {
		if code := devServer(t.Context(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("dev-server %v: exit %d, want 2", args, code)
		}
	}
}
