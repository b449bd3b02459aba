package synapse

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCreateRetriedConflictResolves(t *testing.T) {
	tests := []struct {
		name        string
		first       int // status of the first POST /entity
		existing    Entity
		wantResolve bool
	}{
		{"503 then 409 resolves to our folder", 503, Entity{ID: "syn7", Name: "d", ParentID: "syn1", ConcreteType: TypeFolder}, true},
		{"503 then 409 on a different kind stays a conflict", 503, Entity{ID: "syn7", Name: "d", ParentID: "syn1", ConcreteType: TypeFile, DataFileHandleID: "9"}, false},
		{"429 then 409 is a real conflict (throttled requests never land)", 429, Entity{ID: "syn7", Name: "d", ParentID: "syn1", ConcreteType: TypeFolder}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var posts atomic.Int32
			var lookups atomic.Int32
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method == "POST" && r.URL.Path == "/repo/v1/entity":
					var e Entity
					if err := json.NewDecoder(r.Body).Decode(&e); err != nil || e.Name != "d" || e.ParentID != "syn1" || e.ConcreteType != TypeFolder {
						t.Errorf("create body %+v, %v", e, err)
					}
					if posts.Add(1) == 1 {
						writeErr(w, tt.first, "transient")
						return
					}
					writeErr(w, 409, "An entity with the name: d already exists with a parentId: syn1")
				case r.Method == "POST" && r.URL.Path == "/repo/v1/entity/child":
					lookups.Add(1)
					var body map[string]string
					json.NewDecoder(r.Body).Decode(&body)
					if body["parentId"] != "syn1" || body["entityName"] != "d" {
						t.Errorf("lookup body %v", body)
					}
					writeJSON(w, 200, map[string]string{"id": tt.existing.ID})
				case r.Method == "GET" && r.URL.Path == "/repo/v1/entity/syn7":
					writeJSON(w, 200, tt.existing)
				default:
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
					w.WriteHeader(500)
				}
			}))
			got, err := c.CreateFolder(t.Context(), "d", "syn1")
			if posts.Load() != 2 {
				t.Fatalf("POSTs = %d, want 2", posts.Load())
			}
			if tt.wantResolve {
				if err != nil || got.ID != "syn7" {
					t.Fatalf("got %+v, %v; want syn7", got, err)
				}
				return
			}
			if !IsConflict(err) || got != nil {
				t.Fatalf("got %+v, %v; want conflict", got, err)
			}
		})
	}
}

func TestCreateConflictOnFirstAttemptIsConflict(t *testing.T) {
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/repo/v1/entity" {
			t.Errorf("unexpected %s %s: no resolution on a first-attempt 409", r.Method, r.URL.Path)
		}
		writeErr(w, 409, "exists")
	}))
	_, err := c.CreateFile(t.Context(), "f", "syn1", "123")
	if !IsConflict(err) {
		t.Fatalf("err = %v, want conflict", err)
	}
}

func TestCreateFileBody(t *testing.T) {
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		want := map[string]any{"name": "f.txt", "parentId": "syn1", "concreteType": TypeFile, "dataFileHandleId": "123"}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("body = %v, want %v", m, want)
		}
		m["id"], m["etag"], m["versionNumber"] = "syn5", "e1", 1
		writeJSON(w, 201, m)
	}))
	e, err := c.CreateFile(t.Context(), "f.txt", "syn1", "123")
	if err != nil || e.ID != "syn5" || e.VersionNumber != 1 || !e.IsFile() {
		t.Fatalf("got %+v, %v", e, err)
	}
}

func TestDeleteRetried404IsSuccess(t *testing.T) {
	tests := []struct {
		name    string
		answers []int
		wantErr func(error) bool
	}{
		{"204", []int{204}, nil},
		{"503 then 404 counts as deleted", []int{503, 404}, nil},
		{"404 at once is not found", []int{404}, IsNotFound},
		{"429 then 404 is not found", []int{429, 404}, IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "DELETE" || r.URL.Path != "/repo/v1/entity/syn3" {
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
				}
				i := int(n.Add(1)) - 1
				if tt.answers[i] == 204 {
					w.WriteHeader(204)
					return
				}
				writeErr(w, tt.answers[i], "x")
			}))
			err := c.DeleteEntity(t.Context(), "syn3")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !tt.wantErr(err) {
				t.Fatalf("err = %v", err)
			}
			if int(n.Load()) != len(tt.answers) {
				t.Fatalf("attempts = %d, want %d", n.Load(), len(tt.answers))
			}
		})
	}
}

func TestUpdateRetried412Resolves(t *testing.T) {
	var puts atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "PUT":
			if puts.Add(1) == 1 {
				writeErr(w, 502, "gateway")
				return
			}
			writeErr(w, 412, "etag changed")
		case "GET":
			writeJSON(w, 200, Entity{ID: "syn4", Name: "new", ParentID: "syn1", ConcreteType: TypeFolder, Etag: "e2"})
		}
	}))
	got, err := c.UpdateEntity(t.Context(), &Entity{ID: "syn4", Name: "new", ParentID: "syn1", ConcreteType: TypeFolder, Etag: "e1"})
	if err != nil || got.Etag != "e2" {
		t.Fatalf("got %+v, %v", got, err)
	}
	// Different name on the server: a real precondition failure.
	_, err = c.UpdateEntity(t.Context(), &Entity{ID: "syn4", Name: "other", ParentID: "syn1", ConcreteType: TypeFolder, Etag: "e1"})
	if !IsPreconditionFailed(err) {
		t.Fatalf("err = %v, want precondition failed", err)
	}
}

func TestChildrenPaging(t *testing.T) {
	const total = 120
	var calls atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != "POST" || r.URL.Path != "/repo/v1/entity/children" {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		if req["parentId"] != "syn1" || req["sortBy"] != "NAME" || req["sortDirection"] != "ASC" ||
			fmt.Sprint(req["includeTypes"]) != "[folder file]" {
			t.Errorf("request %v", req)
		}
		start := 0
		if tok, ok := req["nextPageToken"].(string); ok {
			start, _ = strconv.Atoi(tok)
		}
		var resp struct {
			Page          []EntityHeader `json:"page"`
			NextPageToken *string        `json:"nextPageToken"`
		}
		for i := start; i < min(start+50, total); i++ {
			resp.Page = append(resp.Page, EntityHeader{ID: fmt.Sprintf("syn%d", 100+i), Name: fmt.Sprintf("n%03d", i), Type: TypeFile})
		}
		if start+50 < total {
			resp.NextPageToken = ptr(strconv.Itoa(start + 50))
		}
		writeJSON(w, 200, resp)
	}))
	all, err := c.ListChildren(t.Context(), "syn1")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != total || all[0].Name != "n000" || all[total-1].Name != "n119" || !all[5].IsFile() {
		t.Fatalf("got %d children", len(all))
	}
	if calls.Load() != 3 {
		t.Fatalf("calls = %d, want 3", calls.Load())
	}

	calls.Store(0)
	seen := 0
	for _, err := range c.Children(t.Context(), "syn1") {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; seen == 60 {
			break
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("early break fetched %d pages, want 2", calls.Load())
	}
}

func TestChildrenErrorYieldedOnce(t *testing.T) {
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, 403, "no")
	}))
	_, err := c.ListChildren(t.Context(), "syn1", "folder")
	if !IsForbidden(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestBatchFileHandlesChunks(t *testing.T) {
	var sizes []int
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/file/v1/fileHandle/batch" {
			t.Errorf("path %s", r.URL.Path)
		}
		var req BatchFileHandleRequest
		json.NewDecoder(r.Body).Decode(&req)
		if !req.IncludeFileHandles || req.IncludePreSignedURLs {
			t.Errorf("flags %+v", req)
		}
		sizes = append(sizes, len(req.RequestedFiles))
		var resp BatchFileHandleResponse
		for _, a := range req.RequestedFiles {
			if a.AssociateObjectType != AssociateFileEntity {
				t.Errorf("associateObjectType %q", a.AssociateObjectType)
			}
			res := FileHandleResult{FileHandleID: a.FileHandleID}
			if strings.HasSuffix(a.FileHandleID, "7") {
				res.FailureCode = FailureNotFound
			} else {
				res.FileHandle = &S3FileHandle{ID: a.FileHandleID, ContentSize: 5}
			}
			resp.RequestedFiles = append(resp.RequestedFiles, res)
		}
		writeJSON(w, 201, resp)
	}))
	var reqs []FileHandleAssociation
	for i := range 250 {
		reqs = append(reqs, FileHandleAssociation{FileHandleID: strconv.Itoa(1000 + i), AssociateObjectID: fmt.Sprintf("syn%d", i)})
	}
	got, err := c.BatchFileHandles(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[100 100 50]" || len(got) != 250 {
		t.Fatalf("chunks %v, results %d", sizes, len(got))
	}
	for i, r := range got {
		if r.FileHandleID != reqs[i].FileHandleID {
			t.Fatalf("result %d is %s, want %s", i, r.FileHandleID, reqs[i].FileHandleID)
		}
		if (r.FailureCode == "") != (r.FileHandle != nil) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
}

func TestGetUploadSetting(t *testing.T) {
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/repo/v1/projectSettings/syn1/type/upload":
			w.WriteHeader(200) // no setting on this entity
		case "/repo/v1/projectSettings/syn2/type/upload":
			writeJSON(w, 200, ProjectSetting{ConcreteType: TypeUploadDestinationListSetting, ID: "5", ProjectID: "syn2", SettingsType: "upload", Locations: []int64{42}})
		default:
			t.Errorf("path %s", r.URL.Path)
		}
	}))
	ps, err := c.GetUploadSetting(t.Context(), "syn1")
	if ps != nil || err != nil {
		t.Fatalf("got %+v, %v; want nil, nil", ps, err)
	}
	ps, err = c.GetUploadSetting(t.Context(), "syn2")
	if err != nil || ps.Locations[0] != 42 {
		t.Fatalf("got %+v, %v", ps, err)
	}
}

func TestFileCalls(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET /repo/v1/entity/syn5/filehandles":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"list":[{"id":"11","concreteType":"`+TypeS3FileHandle+`","isPreview":true},
				{"id":"10","concreteType":"`+TypeS3FileHandle+`","bucketName":"b","key":"k/f","contentSize":12345678901,
				 "contentMd5":"0123456789abcdef0123456789abcdef","storageLocationId":42,"createdOn":"2023-01-01T10:00:00.000Z","previewId":"11"}]}`)
		case "GET /file/v1/entity/syn5/uploadDestination":
			fmt.Fprint(w, `{"concreteType":"`+TypeExternalS3UploadDestination+`","storageLocationId":42,"uploadType":"S3","baseKey":"base","stsEnabled":true,"bucket":"b","endpointUrl":"https://s3.amazonaws.com"}`)
		case "GET /repo/v1/entity/syn5/sts":
			if r.URL.Query().Get("permission") != "read_write" {
				t.Errorf("query %s", r.URL.RawQuery)
			}
			writeJSON(w, 200, StsCredentials{Bucket: "b", BaseKey: "base", AccessKeyID: "AKIA", SecretAccessKey: "SECRETKEY", SessionToken: "SESSIONTOK", Expiration: exp})
		case "POST /file/v1/externalFileHandle/s3":
			var m map[string]any
			json.NewDecoder(r.Body).Decode(&m)
			if m["concreteType"] != TypeS3FileHandle || m["storageLocationId"] != float64(42) || m["contentSize"] != float64(3) || m["id"] != nil {
				t.Errorf("body %v", m)
			}
			m["id"] = "99"
			writeJSON(w, 201, m)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
	}))
	ctx := t.Context()
	h, err := c.DataFileHandle(ctx, &Entity{ID: "syn5", ConcreteType: TypeFile, DataFileHandleID: "10"})
	if err != nil || h.Key != "k/f" || h.ContentSize != 12345678901 || h.StorageLocationID != 42 || h.CreatedOn.Year() != 2023 {
		t.Fatalf("handle %+v, %v", h, err)
	}
	if _, err := c.DataFileHandle(ctx, &Entity{ID: "syn5", ConcreteType: TypeFile, DataFileHandleID: "12"}); err == nil {
		t.Fatal("want error for an absent handle")
	}
	d, err := c.UploadDestination(ctx, "syn5")
	if err != nil || !d.IsExternal() || !d.StsEnabled || d.Bucket != "b" {
		t.Fatalf("destination %+v, %v", d, err)
	}
	cr, err := c.StsCredentials(ctx, "syn5", ReadWrite)
	if err != nil || !cr.Expiration.Equal(exp) || cr.SecretAccessKey != "SECRETKEY" {
		t.Fatalf("creds %v, %v", cr, err)
	}
	shown := fmt.Sprintf("%v %+v %#v %s", cr, cr, *cr, logValues(cr))
	for _, secret := range []string{"AKIA", "SECRETKEY", "SESSIONTOK"} {
		if strings.Contains(shown, secret) {
			t.Fatalf("credentials leak %s: %s", secret, shown)
		}
	}
	fh, err := c.CreateExternalS3FileHandle(ctx, &S3FileHandle{ID: "ignored", StorageLocationID: 42, BucketName: "b", Key: "base/u/f", ContentMD5: "0123456789abcdef0123456789abcdef", ContentSize: 3, FileName: "f"})
	if err != nil || fh.ID != "99" {
		t.Fatalf("handle %+v, %v", fh, err)
	}
}

func TestEntityKeepsUnknownFields(t *testing.T) {
	in := `{"id":"syn5","name":"a","concreteType":"` + TypeFile + `","etag":"e","dataFileHandleId":"10",
		"fileNameOverride":"orig.txt","description":"old","createdOn":"2023-01-01T10:00:00.000Z"}`
	var e Entity
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	if string(e.Extra["fileNameOverride"]) != `"orig.txt"` || len(e.Extra) != 1 {
		t.Fatalf("extra = %v", e.Extra)
	}
	e.Name, e.Description = "b", "" // clearing a modelled field must stick
	out, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	if m["name"] != "b" || m["fileNameOverride"] != "orig.txt" || m["description"] != nil || m["createdOn"] != "2023-01-01T10:00:00Z" {
		t.Fatalf("marshalled %s", out)
	}
	// Zero times are omitted, not sent as year 1.
	b, _ := json.Marshal(NewFolder("x", "syn1"))
	if string(b) != `{"name":"x","parentId":"syn1","concreteType":"`+TypeFolder+`"}` {
		t.Fatalf("new folder body %s", b)
	}
}

func TestDecodeErrorNotRetried(t *testing.T) {
	var n atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fmt.Fprint(w, `{"id": 5}`)
	}))
	_, err := c.GetEntity(t.Context(), "syn1")
	var se *Error
	if err == nil || errors.As(err, &se) || n.Load() != 1 {
		t.Fatalf("err = %v after %d attempts", err, n.Load())
	}
}
