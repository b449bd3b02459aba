package synapsetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synfs/synfs/synapse/synapsetest"
)

// TestRawRequests covers answers the synfs client never provokes (it
// validates first), sent as another client might send them.
func TestRawRequests(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	imp, err := srv.Import(t.Context(), "raw", dir, true)
	if err != nil {
		t.Fatal(err)
	}
	viewOnly := srv.AddToken(srv.Owner, "view")
	cases := []struct {
		name, method, url, token, body string
		status                         int
		reason                         string
	}{
		{"bad md5", "POST", srv.FileEndpoint + "/externalFileHandle/s3", srv.Owner.Token,
			`{"concreteType":"org.sagebionetworks.repo.model.file.S3FileHandle","storageLocationId":` + itoa(imp.StorageLocationID) + `,"bucketName":"` + imp.Bucket + `","key":"` + imp.BaseKey + `/x","contentMd5":"abc"}`,
			400, "contentMd5"},
		{"bad page token", "POST", srv.RepoEndpoint + "/entity/children", srv.Owner.Token,
			`{"parentId":"` + imp.FolderID + `","includeTypes":["file"],"nextPageToken":"zzz"}`, 400, "nextPageToken"},
		{"no include types", "POST", srv.RepoEndpoint + "/entity/children", srv.Owner.Token,
			`{"parentId":"` + imp.FolderID + `"}`, 400, "includeTypes"},
		{"bad token", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID, "nope", "", 401, "Invalid access token"},
		{"view-only token asks for STS", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID + "/sts?permission=read_only", viewOnly, "", 403, "scope"},
		{"view-only token reads", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID, viewOnly, "", 200, ""},
		{"anonymous reads nothing", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID, "", "", 403, ""},
		{"bad permission", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID + "/sts?permission=admin", srv.Owner.Token, "", 400, "permission"},
		{"include types are case-sensitive", "POST", srv.RepoEndpoint + "/entity/children", srv.Owner.Token,
			`{"parentId":"` + imp.FolderID + `","includeTypes":["FILE"]}`, 400, "EntityType"},
		{"unknown sort", "POST", srv.RepoEndpoint + "/entity/children", srv.Owner.Token,
			`{"parentId":"` + imp.FolderID + `","includeTypes":["file"],"sortBy":"SIZE"}`, 400, "SortBy"},
		{"extra spaces keep the token's scopes", "GET", srv.RepoEndpoint + "/entity/" + imp.FolderID + "/sts?permission=read_only", " " + viewOnly, "", 403, "scope"},
		{"unknown endpoint", "GET", srv.RepoEndpoint + "/nothing/here", srv.Owner.Token, "", 404, ""},
		{"a table in an STS folder", "POST", srv.RepoEndpoint + "/entity", srv.Owner.Token,
			`{"name":"t","parentId":"` + imp.FolderID + `","concreteType":"org.sagebionetworks.repo.model.table.TableEntity"}`, 400, "STS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, tc.url, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status >= 400 {
				var e struct{ ConcreteType, Reason string }
				if err := json.Unmarshal(body, &e); err != nil || e.ConcreteType != "org.sagebionetworks.repo.model.ErrorResponse" || !strings.Contains(e.Reason, tc.reason) {
					t.Fatalf("error body %s, want an ErrorResponse whose reason mentions %q", body, tc.reason)
				}
			}
		})
	}
}

// TestStatsEndpoint: scripts read the counters as JSON.
func TestStatsEndpoint(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	req, _ := http.NewRequest("GET", srv.RepoEndpoint+"/userProfile", nil)
	req.Header.Set("Authorization", "Bearer "+srv.Owner.Token)
	for range 3 {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(strings.TrimSuffix(srv.RepoEndpoint, "/repo/v1") + "/__emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st synapsetest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Synapse["GET /repo/v1/userProfile"] != 3 || st.SynapseTotal != 3 {
		t.Fatalf("stats = %+v, want 3 userProfile calls", st)
	}
}

// TestThrottleAnswers: the service's 429 and its reason, per user.
func TestThrottleAnswers(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{ThrottlePerMinute: 5})
	other := srv.AddUser("other")
	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.RepoEndpoint+"/userProfile", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 5 {
		if code, body := get(srv.Owner.Token); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	code, body := get(srv.Owner.Token)
	if code != 429 || body != `{"reason":"Requests are too frequent. Allowed 5 requests every 60 seconds."}` {
		t.Fatalf("6th request: %d %s, want 429 with the throttle filter's bare reason", code, body)
	}
	if code, _ := get(other.Token); code != 200 {
		t.Fatalf("another user is throttled too: %d", code)
	}
	if st := srv.Stats(); st.Throttled != 1 {
		t.Fatalf("Throttled = %d, want 1", st.Throttled)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
