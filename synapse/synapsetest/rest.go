package synapsetest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token scopes of Synapse personal access tokens.
const (
	scopeView     = "view"
	scopeDownload = "download"
	scopeModify   = "modify"
)

// restHandler serves one Synapse endpoint. It runs with the state locked and
// returns the status and body of a success, or the service's error.
type restHandler func(r *http.Request, uid int64, body []byte) (int, any, *apiError)

type route struct {
	pattern string
	scopes  []string
	handle  restHandler
}

func (s *Server) routes() []route {
	view, dl, mod := []string{scopeView}, []string{scopeView, scopeDownload}, []string{scopeView, scopeModify}
	sts := []string{scopeView, scopeModify, scopeDownload}
	return []route{
		{"GET /repo/v1/userProfile", nil, s.userProfile},
		{"GET /repo/v1/entity/{id}", view, s.getEntity},
		{"POST /repo/v1/entity", mod, s.postEntity},
		{"PUT /repo/v1/entity/{id}", mod, s.putEntity},
		{"DELETE /repo/v1/entity/{id}", mod, s.deleteEntity},
		{"PUT /repo/v1/trashcan/restore/{id}", mod, s.restoreEntity},
		{"POST /repo/v1/entity/children", view, s.postChildren},
		{"POST /repo/v1/entity/child", view, s.postChild},
		{"GET /repo/v1/entity/{id}/path", view, s.getPath},
		{"GET /repo/v1/entity/{id}/version/{n}", view, s.getVersion},
		{"GET /repo/v1/entity/{id}/filehandles", dl, s.getFileHandles},
		{"POST /repo/v1/entity/{id}/bundle2", view, s.postBundle},
		{"GET /repo/v1/entity/{id}/sts", sts, s.getSTS},
		{"POST /repo/v1/storageLocation", mod, s.postLocation},
		{"GET /repo/v1/storageLocation/{id}", view, s.getLocation},
		{"POST /repo/v1/projectSettings", mod, s.postSetting},
		{"GET /repo/v1/projectSettings/{id}/type/upload", view, s.getUploadSetting},
		{"POST /file/v1/fileHandle/batch", dl, s.postHandleBatch},
		{"GET /file/v1/entity/{id}/uploadDestination", view, s.getUploadDestination},
		{"POST /file/v1/externalFileHandle/s3", mod, s.postExternalHandle},
	}
}

// restMux routes Synapse requests; every answer goes through writeJSON so the
// error body is always an ErrorResponse.
func (s *Server) restMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.serveRoute(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorJSON("No endpoint "+r.Method+" "+r.URL.Path+" in the Synapse emulator"))
	})
	return mux
}

func (s *Server) serveRoute(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalFrom(r.Context())
		for _, sc := range rt.scopes {
			if p.scopes != nil && !p.scopes[sc] {
				writeJSON(w, http.StatusForbidden, errorJSON("Request lacks scope(s) required by this service: "+sc))
				return
			}
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorJSON("Could not read the request body: "+err.Error()))
			return
		}
		s.st.mu.Lock()
		status, out, aerr := rt.handle(r, p.id, body)
		s.st.mu.Unlock()
		if aerr != nil {
			writeJSON(w, aerr.status, errorJSON(aerr.reason))
			return
		}
		writeJSON(w, status, out)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"concreteType":"`+typeError+`","reason":"emulator: cannot encode the answer"}`)
	}
	if v == nil {
		b = nil // an empty 200, as GET /projectSettings answers when there is none
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return errf(http.StatusBadRequest, "Invalid JSON in the request body: %v", err)
	}
	return nil
}

// pathEntity resolves {id} to a visible entity the caller may access as need.
func (s *Server) pathEntity(r *http.Request, uid int64, need Access) (*entity, *apiError) {
	id, ok := parseSynID(r.PathValue("id"))
	if !ok {
		return nil, errf(http.StatusBadRequest, "Invalid entity id: %s", r.PathValue("id"))
	}
	e, aerr := s.st.get(id)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.st.require(uid, e, need); aerr != nil {
		return nil, aerr
	}
	return e, nil
}

func (s *Server) userProfile(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	if uid == anonymousID {
		return http.StatusOK, map[string]any{"ownerId": uidText(anonymousID), "userName": "anonymous"}, nil
	}
	u := s.st.users[uid]
	return http.StatusOK, map[string]any{
		"ownerId": uidText(u.id), "userName": u.userName, "emails": []string{u.userName + "@example.org"},
		"firstName": u.userName, "lastName": "Emulated",
	}, nil
}

func (s *Server) getEntity(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, s.st.entityJSON(e, nil), nil
}

func (s *Server) getVersion(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	n, _ := strconv.ParseInt(r.PathValue("n"), 10, 64)
	for i := range e.versions {
		if e.versions[i].number == n {
			return http.StatusOK, s.st.entityJSON(e, &e.versions[i]), nil
		}
	}
	return 0, nil, errf(http.StatusNotFound, "Entity %s has no version %d", synID(e.id), n)
}

func (s *Server) postEntity(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in entityJSON
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	e, aerr := s.st.createEntity(uid, in)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusCreated, s.st.entityJSON(e, nil), nil
}

func (s *Server) putEntity(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	id, ok := parseSynID(r.PathValue("id"))
	if !ok {
		return 0, nil, errf(http.StatusBadRequest, "Invalid entity id: %s", r.PathValue("id"))
	}
	var in entityJSON
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	e, aerr := s.st.updateEntity(uid, id, in)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, s.st.entityJSON(e, nil), nil
}

func (s *Server) deleteEntity(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	id, ok := parseSynID(r.PathValue("id"))
	if !ok {
		return 0, nil, errf(http.StatusBadRequest, "Invalid entity id: %s", r.PathValue("id"))
	}
	if aerr := s.st.trash(uid, id, r.URL.Query().Get("skipTrashCan") == "true"); aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) restoreEntity(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	id, ok := parseSynID(r.PathValue("id"))
	if !ok {
		return 0, nil, errf(http.StatusBadRequest, "Invalid entity id: %s", r.PathValue("id"))
	}
	if aerr := s.st.restore(uid, id); aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusNoContent, nil, nil
}

// childrenPageSize is fixed by the service.
const childrenPageSize = 50

var pageTokenRE = regexp.MustCompile(`^(\d+)a(\d+)$`)

// typeNames maps includeTypes words (Synapse's EntityType enum, lower case
// and case-sensitive) to concrete types; entityTypes is the reverse.
var (
	typeNames   = map[string]string{"project": typeProject, "folder": typeFolder, "file": typeFile}
	entityTypes = map[string]string{typeProject: "project", typeFolder: "folder", typeFile: "file"}
)

func (s *Server) postChildren(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in struct {
		ParentID      string   `json:"parentId"`
		IncludeTypes  []string `json:"includeTypes"`
		SortBy        string   `json:"sortBy"`
		SortDirection string   `json:"sortDirection"`
		NextPageToken string   `json:"nextPageToken"`
	}
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	if len(in.IncludeTypes) == 0 {
		return 0, nil, errf(http.StatusBadRequest, "Must have at least one type for includeTypes")
	}
	parent, aerr := s.readableParent(uid, in.ParentID)
	if aerr != nil {
		return 0, nil, aerr
	}
	want := map[string]bool{}
	for _, t := range in.IncludeTypes {
		ct, ok := typeNames[t]
		if !ok && !isKnownEntityType(t) {
			return 0, nil, errf(http.StatusBadRequest, "No enum constant org.sagebionetworks.repo.model.EntityType.%s", t)
		}
		want[ct] = true
	}
	var page []headerJSON
	for _, c := range s.st.children(parent.id) {
		if want[c.kind] && s.st.access(uid, c)&Read != 0 {
			page = append(page, s.st.headerJSON(c))
		}
	}
	switch in.SortBy {
	case "", "NAME", "CREATED_ON", "MODIFIED_ON":
	default:
		return 0, nil, errf(http.StatusBadRequest, "No enum constant org.sagebionetworks.repo.model.entity.SortBy.%s", in.SortBy)
	}
	sortHeaders(page, in.SortBy, in.SortDirection)
	offset := 0
	if in.NextPageToken != "" {
		m := pageTokenRE.FindStringSubmatch(in.NextPageToken)
		if m == nil {
			return 0, nil, errf(http.StatusBadRequest, "Invalid nextPageToken: %s", in.NextPageToken)
		}
		offset, _ = strconv.Atoi(m[2])
	}
	var next *string
	end := min(offset+childrenPageSize, len(page))
	if offset > len(page) {
		offset = len(page)
	}
	if end < len(page) {
		t := fmt.Sprintf("%da%d", childrenPageSize, end)
		next = &t
	}
	out := page[offset:end]
	if out == nil {
		out = []headerJSON{}
	}
	return http.StatusOK, map[string]any{"page": out, "nextPageToken": next}, nil
}

// isKnownEntityType accepts Synapse type words the emulator never stores
// (table, entityview, ...): asking for them is legal and finds nothing.
func isKnownEntityType(t string) bool {
	switch t {
	case "table", "entityview", "dockerrepo", "submissionview", "dataset", "datasetcollection", "materializedview", "virtualtable", "link":
		return true
	}
	return false
}

func sortHeaders(page []headerJSON, by, dir string) {
	key := func(h headerJSON) string { return h.Name }
	switch by {
	case "CREATED_ON":
		key = func(h headerJSON) string { return h.CreatedOn + h.ID }
	case "MODIFIED_ON":
		key = func(h headerJSON) string { return h.ModifiedOn + h.ID }
	}
	slices.SortStableFunc(page, func(a, b headerJSON) int {
		if dir == "DESC" {
			return strings.Compare(key(b), key(a))
		}
		return strings.Compare(key(a), key(b))
	})
}

// readableParent resolves the parentId of a listing or lookup; none means
// the root, whose children are the projects.
func (s *Server) readableParent(uid int64, parentID string) (*entity, *apiError) {
	if parentID == "" {
		return s.st.entities[rootEntityID], nil
	}
	pid, ok := parseSynID(parentID)
	if !ok {
		return nil, errf(http.StatusBadRequest, "Invalid parentId: %s", parentID)
	}
	p, aerr := s.st.get(pid)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.st.require(uid, p, Read); aerr != nil {
		return nil, aerr
	}
	return p, nil
}

func (s *Server) postChild(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in struct {
		ParentID   string `json:"parentId"`
		EntityName string `json:"entityName"`
	}
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	parent, aerr := s.readableParent(uid, in.ParentID)
	if aerr != nil {
		return 0, nil, aerr
	}
	c := s.st.childNamed(parent.id, in.EntityName)
	if c == nil || s.st.access(uid, c)&Read == 0 {
		return 0, nil, errf(http.StatusNotFound, "Entity not found for the given parentId and entityName")
	}
	return http.StatusOK, map[string]string{"id": synID(c.id)}, nil
}

func (s *Server) getPath(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	var path []headerJSON
	for a := e; a != nil; a = s.st.entities[a.parent] {
		path = append([]headerJSON{s.st.headerJSON(a)}, path...)
		if a.id == rootEntityID {
			break
		}
	}
	return http.StatusOK, map[string]any{"path": path}, nil
}

func (s *Server) entityHandles(e *entity) []handleJSON {
	list := []handleJSON{}
	if v := e.current(); v != nil {
		// As the service does, the preview comes first when there is one:
		// callers must pick the handle whose id is dataFileHandleId.
		h := s.st.handles[v.handleID]
		if p, ok := s.st.handles[h.preview]; ok {
			list = append(list, handleToJSON(p))
		}
		list = append(list, handleToJSON(h))
	}
	return list
}

func (s *Server) getFileHandles(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read|Download)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, map[string]any{"list": s.entityHandles(e)}, nil
}

func (s *Server) postBundle(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in struct {
		IncludeEntity      bool `json:"includeEntity"`
		IncludeFileHandles bool `json:"includeFileHandles"`
	}
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	out := map[string]any{}
	if in.IncludeEntity {
		out["entity"] = s.st.entityJSON(e, nil)
		out["entityType"] = entityTypes[e.kind]
	}
	// Handles are part of the bundle only for callers who may download.
	if in.IncludeFileHandles && s.st.access(uid, e)&Download != 0 {
		out["fileHandles"] = s.entityHandles(e)
	}
	return http.StatusOK, out, nil
}

func (s *Server) getSTS(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	perm := r.URL.Query().Get("permission")
	if perm != "read_only" && perm != "read_write" {
		return 0, nil, errf(http.StatusBadRequest, "permission must be read_only or read_write")
	}
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	loc := s.st.stsLocation(e)
	switch {
	case s.st.uploadSetting(e) == nil:
		return 0, nil, errf(http.StatusBadRequest, "Entity must have a project setting")
	case loc == nil:
		return 0, nil, errf(http.StatusBadRequest, "Entity must have an STS-enabled storage location")
	}
	need := Read | Download
	if perm == "read_write" {
		if !loc.external() {
			return 0, nil, errf(http.StatusBadRequest, "STS write access is not allowed in Synapse storage")
		}
		need |= Update | Create | Delete
	}
	if aerr := s.st.require(uid, e, need); aerr != nil {
		return 0, nil, aerr
	}
	g := s.vend(loc, perm == "read_write")
	return http.StatusOK, stsJSON{
		Bucket: loc.bucket, BaseKey: loc.baseKey, AccessKeyID: g.AccessKeyID, SecretAccessKey: g.SecretAccessKey,
		SessionToken: g.SessionToken, Expiration: synapseTime(g.Expiration),
	}, nil
}

func (s *Server) postLocation(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in locationJSON
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	if uid == anonymousID {
		return 0, nil, errf(http.StatusForbidden, "Cannot create storage locations anonymously")
	}
	l, aerr := s.st.createLocation(uid, in, s.objectText)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusCreated, locationToJSON(l), nil
}

// objectText reads a small object (owner.txt) straight from storage.
func (s *Server) objectText(bucket, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := s.s3.GetObject(ctx, bucket, key)
	return string(b), err
}

func (s *Server) getLocation(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	l, ok := s.st.locations[id]
	if err != nil || !ok {
		return 0, nil, errf(http.StatusNotFound, "Storage location %s does not exist", r.PathValue("id"))
	}
	if l.id != defaultLocation && l.createdBy != uid {
		return 0, nil, errf(http.StatusForbidden, "Only the creator can read storage location %d", id)
	}
	return http.StatusOK, locationToJSON(l), nil
}

func (s *Server) postSetting(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in settingJSON
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	ps, aerr := s.st.createSetting(uid, in)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusCreated, settingToJSON(ps), nil
}

func (s *Server) getUploadSetting(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	if e.setting == nil {
		return http.StatusOK, nil, nil
	}
	return http.StatusOK, settingToJSON(e.setting), nil
}

func (s *Server) getUploadDestination(r *http.Request, uid int64, _ []byte) (int, any, *apiError) {
	e, aerr := s.pathEntity(r, uid, Read)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, destinationToJSON(s.st.location(e)), nil
}

// maxBatch is the service's limit on one fileHandle/batch request.
const maxBatch = 100

func (s *Server) postHandleBatch(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in struct {
		RequestedFiles []struct {
			FileHandleID        string `json:"fileHandleId"`
			AssociateObjectID   string `json:"associateObjectId"`
			AssociateObjectType string `json:"associateObjectType"`
		} `json:"requestedFiles"`
		IncludeFileHandles bool `json:"includeFileHandles"`
	}
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	if len(in.RequestedFiles) > maxBatch {
		return 0, nil, errf(http.StatusBadRequest, "Request exceeds the maximum number of file handles: %d", maxBatch)
	}
	type result struct {
		FileHandleID string      `json:"fileHandleId"`
		FileHandle   *handleJSON `json:"fileHandle,omitempty"`
		FailureCode  string      `json:"failureCode,omitempty"`
	}
	out := make([]result, 0, len(in.RequestedFiles))
	for _, req := range in.RequestedFiles {
		res := result{FileHandleID: req.FileHandleID}
		hid, _ := strconv.ParseInt(req.FileHandleID, 10, 64)
		switch code := s.batchItem(uid, hid, req.AssociateObjectID, req.AssociateObjectType); {
		case code != "":
			res.FailureCode = code
		case in.IncludeFileHandles:
			h := handleToJSON(s.st.handles[hid])
			res.FileHandle = &h
		}
		out = append(out, res)
	}
	return http.StatusCreated, map[string]any{"requestedFiles": out}, nil
}

// batchItem checks one association: the handle must belong to a version of
// the file entity and the caller must be allowed to download it.
func (s *Server) batchItem(uid, hid int64, objectID, objectType string) string {
	if objectType != "FileEntity" {
		return "UNAUTHORIZED"
	}
	eid, ok := parseSynID(objectID)
	if !ok {
		return "NOT_FOUND"
	}
	e, aerr := s.st.get(eid)
	if aerr != nil || e.kind != typeFile {
		return "NOT_FOUND"
	}
	if _, ok := s.st.handles[hid]; !ok {
		return "NOT_FOUND"
	}
	if s.st.access(uid, e)&(Read|Download) != Read|Download {
		return "UNAUTHORIZED"
	}
	for _, v := range e.versions {
		if v.handleID == hid {
			return ""
		}
	}
	return "UNAUTHORIZED"
}

var md5HexRE = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

func (s *Server) postExternalHandle(r *http.Request, uid int64, body []byte) (int, any, *apiError) {
	var in handleJSON
	if aerr := decode(body, &in); aerr != nil {
		return 0, nil, aerr
	}
	l, ok := s.st.locations[in.StorageLocationID]
	switch {
	case !ok:
		return 0, nil, errf(http.StatusBadRequest, "Storage location %d does not exist", in.StorageLocationID)
	case !l.external():
		return 0, nil, errf(http.StatusBadRequest, "The storage location %d is not an ExternalS3StorageLocationSetting", l.id)
	case in.BucketName != l.bucket:
		return 0, nil, errf(http.StatusBadRequest, "The bucket for the file handle (%s) does not match the bucket of the storage location (%s)", in.BucketName, l.bucket)
	case l.stsEnabled && !underBaseKey(in.Key, l.baseKey):
		return 0, nil, errf(http.StatusBadRequest, "The key for the file handle must start with the base key of the storage location (%s)", l.baseKey)
	case l.createdBy != uid:
		return 0, nil, errf(http.StatusForbidden, "Only the creator of the storage location (%d) can create an external S3 file handle for it", l.id)
	case !md5HexRE.MatchString(in.ContentMd5):
		return 0, nil, errf(http.StatusBadRequest, "The contentMd5 is not a valid hex-encoded MD5: %s", in.ContentMd5)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	size, _, err := s.s3.HeadObject(ctx, in.BucketName, in.Key)
	if err != nil {
		return 0, nil, errf(http.StatusBadRequest, "Unable to access the file at bucket: %s key: %s.", in.BucketName, in.Key)
	}
	if in.ContentSize != nil {
		size = *in.ContentSize
	}
	// The service fills what the caller left out with NOT_SET, not with
	// anything derived from the key.
	name, ctype := cmp.Or(in.FileName, "NOT_SET"), cmp.Or(in.ContentType, "NOT_SET")
	h := &fileHandle{
		id: s.st.newID(), bucket: in.BucketName, key: in.Key, size: size, md5: in.ContentMd5,
		contentType: ctype, fileName: name, location: l.id, createdBy: uid, createdOn: s.st.now(), etag: newUUID(),
	}
	s.st.handles[h.id] = h
	return http.StatusCreated, handleToJSON(h), nil
}
