package synapse_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

// client signs in to the emulator as the holder of token.
func client(t *testing.T, srv *synapsetest.Server, token string, tweak ...func(*synapse.Config)) *synapse.Client {
	t.Helper()
	cfg := synapse.Config{
		RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: token,
		RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond, MaxRetries: 30,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := synapse.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// s3For builds an S3 client from vended credentials the way synfs must:
// explicitly, without the shared AWS config of the environment.
func s3For(srv *synapsetest.Server, ak, sk, token string) *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.S3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, token),
		HTTPClient:  &http.Client{}, RetryMaxAttempts: 1,
	})
}

func s3Vended(srv *synapsetest.Server, c *synapse.StsCredentials) *s3.Client {
	return s3For(srv, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// tree writes files (path -> content) under a new temporary directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func awsCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "not an API error: " + err.Error()
	}
	return ""
}

func TestUserProfile(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()

	me, err := client(t, srv, srv.Owner.Token).UserProfile(ctx)
	if err != nil || me.OwnerID != fmt.Sprint(srv.Owner.ID) || me.UserName != srv.Owner.UserName {
		t.Fatalf("owner profile = %+v, %v; want id %d", me, err, srv.Owner.ID)
	}
	anon, err := client(t, srv, "").UserProfile(ctx)
	if err != nil || anon.OwnerID != "273950" {
		t.Fatalf("anonymous profile = %+v, %v; want ownerId 273950", anon, err)
	}
	_, err = client(t, srv, "not-a-token").UserProfile(ctx)
	if !synapse.IsUnauthorized(err) {
		t.Fatalf("bad token: err = %v, want 401", err)
	}
	if strings.Contains(err.Error(), "not-a-token") {
		t.Fatalf("the error text carries the token: %v", err)
	}
}

// TestReadAManagedFolder walks an imported Synapse-managed STS folder the
// way the filesystem will: listing, lookup, path, file handles, destination
// and read-only credentials, then reads bytes from S3.
func TestReadAManagedFolder(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	files := map[string]string{"a.csv": "x,y\n1,2\n", "sub/deeper/b.txt": "hello from b"}
	for i := range 120 { // more than two pages of children
		files[fmt.Sprintf("many/f%03d.txt", i)] = fmt.Sprint(i)
	}
	imp, err := srv.Import(ctx, "dataset", tree(t, files), false)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, srv.Owner.Token)

	root, err := c.GetEntity(ctx, imp.FolderID)
	if err != nil || !root.IsFolder() || root.Name != "dataset" {
		t.Fatalf("GetEntity(root) = %+v, %v", root, err)
	}
	top, err := c.ListChildren(ctx, imp.FolderID)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(top); !slices.Equal(got, []string{"a.csv", "many", "sub"}) {
		t.Fatalf("children of root = %v", got)
	}
	many, err := c.ListChildren(ctx, imp.IDs["many"])
	if err != nil || len(many) != 120 || many[0].Name != "f000.txt" || many[119].Name != "f119.txt" {
		t.Fatalf("children of many: %d, %v", len(many), err)
	}
	if n := srv.Stats().Synapse["POST /repo/v1/entity/children"]; n != 1+3 {
		t.Fatalf("listing 3 + 120 children took %d calls, want 4 (pages of 50)", n)
	}

	id, err := c.LookupChild(ctx, imp.IDs["sub"], "deeper")
	if err != nil || id != imp.IDs["sub/deeper"] {
		t.Fatalf("LookupChild = %q, %v", id, err)
	}
	if _, err := c.LookupChild(ctx, imp.FolderID, "nope"); !synapse.IsNotFound(err) {
		t.Fatalf("LookupChild(missing) err = %v, want 404", err)
	}
	path, err := c.EntityPath(ctx, imp.IDs["sub/deeper/b.txt"])
	if err != nil {
		t.Fatal(err)
	}
	if got := names(path); !slices.Equal(got[len(got)-4:], []string{"dataset", "sub", "deeper", "b.txt"}) {
		t.Fatalf("path = %v", got)
	}

	fileID := imp.IDs["sub/deeper/b.txt"]
	file, err := c.GetEntity(ctx, fileID)
	if err != nil || !file.IsFile() || file.VersionNumber != 1 {
		t.Fatalf("GetEntity(file) = %+v, %v", file, err)
	}
	h, err := c.DataFileHandle(ctx, file)
	if err != nil || h.ContentSize != int64(len("hello from b")) || h.ContentMD5 != md5hex([]byte("hello from b")) || !strings.HasPrefix(h.Key, imp.BaseKey+"/") {
		t.Fatalf("DataFileHandle = %+v, %v", h, err)
	}
	batch, err := c.BatchFileHandles(ctx, []synapse.FileHandleAssociation{
		{FileHandleID: h.ID, AssociateObjectID: fileID, AssociateObjectType: "FileEntity"},
		{FileHandleID: h.ID, AssociateObjectID: imp.IDs["a.csv"], AssociateObjectType: "FileEntity"},
		{FileHandleID: "999999999", AssociateObjectID: fileID, AssociateObjectType: "FileEntity"},
	})
	if err != nil || len(batch) != 3 || batch[0].FileHandle == nil || batch[0].FileHandle.Key != h.Key ||
		batch[1].FailureCode != "UNAUTHORIZED" || batch[2].FailureCode != "NOT_FOUND" {
		t.Fatalf("BatchFileHandles = %+v, %v", batch, err)
	}

	dest, err := c.UploadDestination(ctx, imp.IDs["sub"])
	if err != nil || dest.IsExternal() || !dest.StsEnabled || dest.StorageLocationID != imp.StorageLocationID || dest.BaseKey != imp.BaseKey {
		t.Fatalf("UploadDestination = %+v, %v", dest, err)
	}
	if _, err := c.StsCredentials(ctx, imp.FolderID, synapse.ReadWrite); !synapse.IsBadRequest(err) {
		t.Fatalf("read_write on Synapse storage: err = %v, want 400", err)
	}
	if _, err := c.StsCredentials(ctx, imp.ProjectID, synapse.ReadOnly); !synapse.IsBadRequest(err) {
		t.Fatalf("STS on a project without STS: err = %v, want 400", err)
	}
	creds, err := c.StsCredentials(ctx, imp.IDs["sub/deeper"], synapse.ReadOnly)
	if err != nil || creds.Bucket != imp.Bucket || creds.BaseKey != imp.BaseKey || time.Until(creds.Expiration) < 50*time.Minute {
		t.Fatalf("StsCredentials = %v, %v", creds, err)
	}
	out, err := s3Vended(srv, creds).GetObject(ctx, &s3.GetObjectInput{Bucket: &h.BucketName, Key: &h.Key, Range: aws.String("bytes=6-9")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	if string(got) != "from" {
		t.Fatalf("ranged GET = %q, want %q", got, "from")
	}
	// A text file has a preview, listed first: DataFileHandle above had to
	// pick the handle named by dataFileHandleId.
	handles, err := c.EntityFileHandles(ctx, fileID)
	if err != nil || len(handles) != 2 || !handles[0].IsPreview || handles[1].ID != h.ID || h.IsPreview {
		t.Fatalf("EntityFileHandles = %+v, %v; want the preview, then the data handle", handles, err)
	}
}

func names(hs []synapse.EntityHeader) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// externalFolder sets up what a lab does by hand for an external STS
// folder, through the client: a bucket with owner.txt, a storage location,
// a folder and the project setting.
func externalFolder(t *testing.T, srv *synapsetest.Server, c *synapse.Client) (project, folder *synapse.Entity, loc *synapse.StorageLocationSetting) {
	t.Helper()
	ctx := t.Context()
	if err := srv.CreateBucket("lab-bucket"); err != nil {
		t.Fatal(err)
	}
	if err := srv.PutObject(ctx, "lab-bucket", "lab/outbox/owner.txt", []byte(srv.Owner.UserName)); err != nil {
		t.Fatal(err)
	}
	project, err := c.CreateEntity(ctx, &synapse.Entity{Name: "Lab project", ConcreteType: synapse.TypeProject})
	if err != nil {
		t.Fatal(err)
	}
	folder, err = c.CreateFolder(ctx, "outbox", project.ID)
	if err != nil {
		t.Fatal(err)
	}
	loc, err = c.CreateStorageLocation(ctx, &synapse.StorageLocationSetting{
		ConcreteType: synapse.TypeExternalS3StorageLocation, UploadType: "S3", StsEnabled: true, Bucket: "lab-bucket", BaseKey: "lab/outbox",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateProjectSetting(ctx, &synapse.ProjectSetting{
		ConcreteType: synapse.TypeUploadDestinationListSetting, ProjectID: folder.ID, SettingsType: "upload", Locations: []int64{loc.StorageLocationID},
	}); err != nil {
		t.Fatal(err)
	}
	return project, folder, loc
}

// upload puts bytes into the folder's prefix with read_write credentials and
// registers them, as synfs's write path will.
func upload(t *testing.T, srv *synapsetest.Server, c *synapse.Client, folderID string, loc *synapse.StorageLocationSetting, name string, data []byte) *synapse.S3FileHandle {
	t.Helper()
	ctx := t.Context()
	creds, err := c.StsCredentials(ctx, folderID, synapse.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s/%d/%s", creds.BaseKey, time.Now().UnixNano(), name)
	if _, err := s3Vended(srv, creds).PutObject(ctx, &s3.PutObjectInput{Bucket: &creds.Bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	h, err := c.CreateExternalS3FileHandle(ctx, &synapse.S3FileHandle{
		StorageLocationID: loc.StorageLocationID, BucketName: creds.Bucket, Key: key, ContentMD5: md5hex(data), ContentSize: int64(len(data)), FileName: name,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestWriteAnExternalFolder is the life of a file in an external read-write
// STS folder: set-up, upload, register, new version, rename, conflicts,
// delete.
func TestWriteAnExternalFolder(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	c := client(t, srv, srv.Owner.Token)
	project, folder, loc := externalFolder(t, srv, c)

	if s, err := c.GetUploadSetting(ctx, folder.ID); err != nil || s == nil || !slices.Equal(s.Locations, []int64{loc.StorageLocationID}) {
		t.Fatalf("GetUploadSetting(folder) = %+v, %v", s, err)
	}
	if s, err := c.GetUploadSetting(ctx, project.ID); err != nil || s != nil {
		t.Fatalf("GetUploadSetting(project) = %+v, %v; want none", s, err)
	}
	if got, err := c.GetStorageLocation(ctx, loc.StorageLocationID); err != nil || got.Bucket != "lab-bucket" || got.BaseKey != "lab/outbox" {
		t.Fatalf("GetStorageLocation = %+v, %v", got, err)
	}
	dest, err := c.UploadDestination(ctx, folder.ID)
	if err != nil || !dest.IsExternal() || dest.Bucket != "lab-bucket" || dest.BaseKey != "lab/outbox" || !dest.StsEnabled {
		t.Fatalf("UploadDestination = %+v, %v", dest, err)
	}

	v1 := upload(t, srv, c, folder.ID, loc, "results.csv", []byte("version one"))
	file, err := c.CreateFile(ctx, "results.csv", folder.ID, v1.ID)
	if err != nil || file.VersionNumber != 1 {
		t.Fatalf("CreateFile = %+v, %v", file, err)
	}
	if _, err := c.CreateFile(ctx, "results.csv", folder.ID, v1.ID); !synapse.IsConflict(err) {
		t.Fatalf("duplicate name: err = %v, want 409", err)
	}
	if _, err := c.CreateFolder(ctx, "bad/name", folder.ID); !synapse.IsBadRequest(err) {
		t.Fatalf("bad name: err = %v, want 400", err)
	}
	// Synapse trims names: "results.csv " is "results.csv", already taken.
	if _, err := c.CreateFolder(ctx, "results.csv ", folder.ID); !synapse.IsConflict(err) {
		t.Fatalf("name with a trailing space: err = %v, want 409", err)
	}
	if _, err := c.CreateFile(ctx, "elsewhere.csv", project.ID, v1.ID); !synapse.IsBadRequest(err) {
		t.Fatalf("an STS file handle outside its folder: err = %v, want 400", err)
	}

	v2 := upload(t, srv, c, folder.ID, loc, "results.csv", []byte("version two, longer"))
	stale := *file
	file.DataFileHandleID = v2.ID
	file, err = c.UpdateEntity(ctx, file)
	if err != nil || file.VersionNumber != 2 {
		t.Fatalf("UpdateEntity(new handle) = %+v, %v; want version 2", file, err)
	}
	stale.Name = "other.csv"
	if _, err := c.UpdateEntity(ctx, &stale); !synapse.IsPreconditionFailed(err) {
		t.Fatalf("stale etag: err = %v, want 412", err)
	}
	old, err := c.GetEntityVersion(ctx, file.ID, 1)
	if err != nil || old.DataFileHandleID != v1.ID {
		t.Fatalf("version 1 = %+v, %v", old, err)
	}

	sub, err := c.CreateFolder(ctx, "2026", folder.ID)
	if err != nil {
		t.Fatal(err)
	}
	file.Name, file.ParentID = "final.csv", sub.ID
	if file, err = c.UpdateEntity(ctx, file); err != nil {
		t.Fatalf("rename and move: %v", err)
	}
	if id, err := c.LookupChild(ctx, sub.ID, "final.csv"); err != nil || id != file.ID {
		t.Fatalf("after move LookupChild = %q, %v", id, err)
	}
	file.ParentID = project.ID
	if _, err := c.UpdateEntity(ctx, file); !synapse.IsBadRequest(err) {
		t.Fatalf("move out of the STS folder: err = %v, want 400", err)
	}

	if err := c.DeleteEntity(ctx, file.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEntity(ctx, file.ID); !synapse.IsNotFound(err) {
		t.Fatalf("trashed entity: err = %v, want 404", err)
	}
	if err := c.RestoreEntity(ctx, file.ID); err != nil {
		t.Fatalf("restore from the trash: %v", err)
	}
	if back, err := c.GetEntity(ctx, file.ID); err != nil || back.ParentID != sub.ID {
		t.Fatalf("restored entity = %+v, %v", back, err)
	}
	if err := c.DeleteEntity(ctx, file.ID); err != nil {
		t.Fatal(err)
	}
	if kids, err := c.ListChildren(ctx, sub.ID); err != nil || len(kids) != 0 {
		t.Fatalf("children after delete = %v, %v", names(kids), err)
	}
}

func TestExternalFileHandleChecks(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	c := client(t, srv, srv.Owner.Token)
	_, folder, loc := externalFolder(t, srv, c)
	h := upload(t, srv, c, folder.ID, loc, "data.bin", []byte("payload"))
	other := srv.AddUser("collaborator")

	cases := []struct {
		name  string
		c     *synapse.Client
		edit  func(*synapse.S3FileHandle)
		check func(error) bool
	}{
		{"the object must exist", c, func(x *synapse.S3FileHandle) { x.Key = "lab/outbox/none/missing.bin" }, synapse.IsBadRequest},
		{"key under the base key", c, func(x *synapse.S3FileHandle) { x.Key = "elsewhere/data.bin" }, synapse.IsBadRequest},
		{"bucket of the location", c, func(x *synapse.S3FileHandle) { x.BucketName = "other-bucket" }, synapse.IsBadRequest},
		{"managed location is not external", c, func(x *synapse.S3FileHandle) { x.StorageLocationID = 1 }, synapse.IsBadRequest},
		{"only the location's creator", client(t, srv, other.Token), func(*synapse.S3FileHandle) {}, synapse.IsForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := synapse.S3FileHandle{StorageLocationID: loc.StorageLocationID, BucketName: h.BucketName, Key: h.Key, ContentMD5: h.ContentMD5, ContentSize: h.ContentSize}
			tc.edit(&req)
			if _, err := tc.c.CreateExternalS3FileHandle(ctx, &req); !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestSTSSetUpRules covers the placement rules the service enforces when a
// storage location is bound to a folder.
func TestSTSSetUpRules(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	c := client(t, srv, srv.Owner.Token)
	project, folder, loc := externalFolder(t, srv, c)
	setting := func(id string) error {
		_, err := c.CreateProjectSetting(ctx, &synapse.ProjectSetting{
			ConcreteType: synapse.TypeUploadDestinationListSetting, ProjectID: id, SettingsType: "upload", Locations: []int64{loc.StorageLocationID},
		})
		return err
	}
	nested, err := c.CreateFolder(ctx, "nested", folder.ID)
	if err != nil {
		t.Fatal(err)
	}
	full, err := c.CreateFolder(ctx, "full", project.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFolder(ctx, "child", full.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"not on a project":          setting(project.ID),
		"not inside an STS folder":  setting(nested.ID),
		"only on an empty folder":   setting(full.ID),
		"not twice on the same one": setting(folder.ID),
	} {
		if !synapse.IsBadRequest(err) && !synapse.IsConflict(err) {
			t.Errorf("%s: err = %v, want 400 or 409", name, err)
		}
	}
}

// TestSecondUser shows what a collaborator with READ+DOWNLOAD sees: the
// shared folder minus what is not shared, no write credentials, and 403s.
func TestSecondUser(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	imp, err := srv.Import(ctx, "share", tree(t, map[string]string{"open.txt": "o", "secret.txt": "s"}), true)
	if err != nil {
		t.Fatal(err)
	}
	reader, stranger := srv.AddUser("reader"), srv.AddUser("stranger")
	if err := srv.SetAccess(imp.FolderID, reader, synapsetest.ReadDownload); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetAccess(imp.IDs["secret.txt"], reader, 0); err != nil {
		t.Fatal(err)
	}
	rc, sc := client(t, srv, reader.Token), client(t, srv, stranger.Token)

	// Sharing with one user takes nothing from the owner.
	if kids, err := client(t, srv, srv.Owner.Token).ListChildren(ctx, imp.FolderID); err != nil || len(kids) != 2 {
		t.Fatalf("owner lists %v, %v after sharing; want both files", names(kids), err)
	}

	kids, err := rc.ListChildren(ctx, imp.FolderID)
	if err != nil || !slices.Equal(names(kids), []string{"open.txt"}) {
		t.Fatalf("reader lists %v, %v; want only open.txt", names(kids), err)
	}
	if _, err := rc.GetEntity(ctx, imp.IDs["secret.txt"]); !synapse.IsForbidden(err) {
		t.Fatalf("reader GetEntity(secret) err = %v, want 403", err)
	}
	if _, err := rc.GetEntity(ctx, imp.ProjectID); !synapse.IsForbidden(err) {
		t.Fatalf("reader GetEntity(project) err = %v, want 403", err)
	}
	if _, err := rc.StsCredentials(ctx, imp.FolderID, synapse.ReadOnly); err != nil {
		t.Fatalf("reader read_only: %v", err)
	}
	if _, err := rc.StsCredentials(ctx, imp.FolderID, synapse.ReadWrite); !synapse.IsForbidden(err) {
		t.Fatalf("reader read_write err = %v, want 403", err)
	}
	if _, err := rc.CreateFolder(ctx, "mine", imp.FolderID); !synapse.IsForbidden(err) {
		t.Fatalf("reader create err = %v, want 403", err)
	}
	if _, err := sc.ListChildren(ctx, imp.FolderID); !synapse.IsForbidden(err) {
		t.Fatalf("stranger list err = %v, want 403", err)
	}
	if _, err := sc.StsCredentials(ctx, imp.FolderID, synapse.ReadOnly); !synapse.IsForbidden(err) {
		t.Fatalf("stranger read_only err = %v, want 403", err)
	}
}

// TestRidesOutThrottleAndFaults: many goroutines over one client against the
// service's throttle and injected failures; every call succeeds.
func TestRidesOutThrottleAndFaults(t *testing.T) {
	cases := []struct {
		name   string
		faults netem.Faults
		tweak  func(*synapse.Config)
		check  func(t *testing.T, st synapsetest.Stats)
	}{
		{
			name:  "a client allowed more concurrency than the service",
			tweak: func(c *synapse.Config) { c.MaxConcurrent = 12 },
			check: func(t *testing.T, st synapsetest.Stats) {
				if st.Throttled == 0 {
					t.Errorf("no 429 seen: the test did not exercise the throttle")
				}
			},
		},
		{
			name: "the default client stays inside the throttle",
			check: func(t *testing.T, st synapsetest.Stats) {
				if st.Throttled != 0 {
					t.Errorf("%d requests throttled; the client's limiter should keep to 3 in flight", st.Throttled)
				}
			},
		},
		{
			name:   "injected 500, 503 and 429 answers",
			faults: netem.Faults{Status500: 0.1, Status503: 0.1, Status429: 0.1},
		},
		{
			name:   "reset and truncated bodies",
			faults: netem.Faults{Reset: 0.15, Truncate: 0.15},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := synapsetest.NewServer(t, synapsetest.Options{RESTLatency: 2 * time.Millisecond})
			files := map[string]string{}
			for i := range 60 {
				files[fmt.Sprintf("f%02d", i)] = "x"
			}
			imp, err := srv.Import(t.Context(), "busy", tree(t, files), false)
			if err != nil {
				t.Fatal(err)
			}
			var tweaks []func(*synapse.Config)
			if tc.tweak != nil {
				tweaks = append(tweaks, tc.tweak)
			}
			c := client(t, srv, srv.Owner.Token, tweaks...)
			srv.RESTConditions().SetFaults(tc.faults)
			srv.ResetStats()
			var wg sync.WaitGroup
			errs := make(chan error, 60)
			for p, id := range imp.IDs {
				wg.Go(func() {
					e, err := c.GetEntity(t.Context(), id)
					if err == nil && e.Name != p {
						err = fmt.Errorf("GetEntity(%s) name %q, want %q", id, e.Name, p)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.check != nil {
				tc.check(t, srv.Stats())
			}
		})
	}
}

// TestSTSPolicy: the S3 endpoint allows exactly what Synapse's session policy
// allows, and answers refusals with AWS's codes.
func TestSTSPolicy(t *testing.T) {
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	ctx := t.Context()
	imp, err := srv.Import(ctx, "policy", tree(t, map[string]string{"in.txt": "0123456789"}), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.PutObject(ctx, imp.Bucket, "outside/other.txt", []byte("not yours")); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, srv.Owner.Token)
	ro, err := c.StsCredentials(ctx, imp.FolderID, synapse.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := c.StsCredentials(ctx, imp.FolderID, synapse.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.GetEntity(ctx, imp.IDs["in.txt"])
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.DataFileHandle(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	bucket := imp.Bucket
	get := func(cl *s3.Client, key string) error {
		out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key)})
		if err == nil {
			out.Body.Close()
		}
		return err
	}
	put := func(cl *s3.Client, key string) error {
		_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader("new")})
		return err
	}
	list := func(cl *s3.Client, prefix string) error {
		_, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix)})
		return err
	}
	roC, rwC := s3Vended(srv, ro), s3Vended(srv, rw)
	badSig := s3For(srv, ro.AccessKeyID, "wrong"+ro.SecretAccessKey[5:], ro.SessionToken)
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"read in scope", get(roC, h.Key), ""},
		{"list in scope", list(roC, imp.BaseKey+"/"), ""},
		{"read outside the prefix", get(roC, "outside/other.txt"), "AccessDenied"},
		{"list the whole bucket", list(roC, ""), "AccessDenied"},
		{"write with read_only", put(roC, imp.BaseKey+"/new.txt"), "AccessDenied"},
		{"write with read_write", put(rwC, imp.BaseKey+"/new.txt"), ""},
		{"write outside the prefix", put(rwC, "outside/new.txt"), "AccessDenied"},
		{"read owner.txt", get(rwC, imp.BaseKey+"/owner.txt"), "AccessDenied"},
		{"overwrite owner.txt", put(rwC, imp.BaseKey+"/owner.txt"), "AccessDenied"},
		{"bad signature", get(badSig, h.Key), "SignatureDoesNotMatch"},
		{"unknown key", get(s3For(srv, "ASIANOTAKEY", "x", "y"), h.Key), "InvalidAccessKeyId"},
		{"admin key reads anything", get(s3For(srv, srv.AdminAccessKeyID, srv.AdminSecretAccessKey, ""), "outside/other.txt"), ""},
	}
	for _, tc := range cases {
		if got := awsCode(tc.err); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}

	srv.SetSTSLifetime(300 * time.Millisecond)
	short, err := c.StsCredentials(ctx, imp.FolderID, synapse.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(s3Vended(srv, short), h.Key); err != nil {
		t.Fatalf("fresh short-lived credentials: %v", err)
	}
	time.Sleep(time.Until(short.Expiration) + 50*time.Millisecond)
	if got := awsCode(get(s3Vended(srv, short), h.Key)); got != "ExpiredToken" {
		t.Fatalf("expired credentials: got %q, want ExpiredToken", got)
	}
}
