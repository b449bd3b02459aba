package synapsetest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// apiError is an answer the service gives instead of a result: a status and
// the reason text of Synapse's ErrorResponse.
type apiError struct {
	status int
	reason string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.reason) }

func errf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, reason: fmt.Sprintf(format, args...)}
}

func notFound(id int64) *apiError {
	return errf(http.StatusNotFound, "The resource you are attempting to access cannot be found: %s", synID(id))
}

// state is the emulated repository: every rule of synapse-api.md that the
// service enforces on entities, ACLs, file handles and storage lives here,
// behind one mutex. It knows nothing of HTTP beyond status codes.
type state struct {
	mu        sync.Mutex
	now       func() time.Time
	nextID    int64 // entities, file handles, locations and settings draw from one sequence
	users     map[int64]*user
	tokens    map[string]int64
	scopes    map[string]map[string]bool // per token; absent: every scope
	entities  map[int64]*entity
	handles   map[int64]*fileHandle
	locations map[int64]*storageLocation
}

func newState(now func() time.Time) *state {
	st := &state{
		now:       now,
		nextID:    10000,
		users:     map[int64]*user{},
		tokens:    map[string]int64{},
		scopes:    map[string]map[string]bool{},
		entities:  map[int64]*entity{},
		handles:   map[int64]*fileHandle{},
		locations: map[int64]*storageLocation{},
	}
	t := now()
	st.entities[rootEntityID] = &entity{id: rootEntityID, name: "root", kind: typeFolder, etag: newUUID(), createdOn: t, modifiedOn: t}
	st.locations[defaultLocation] = &storageLocation{id: defaultLocation, concrete: typeS3Location, bucket: ManagedBucket, createdOn: t, etag: newUUID()}
	return st
}

func (st *state) newID() int64 {
	st.nextID++
	return st.nextID
}

// visible reports whether e exists for callers: neither it nor an ancestor
// is in the trash can.
func (st *state) visible(e *entity) bool {
	for e != nil {
		if e.trashed {
			return false
		}
		if e.id == rootEntityID {
			return true
		}
		e = st.entities[e.parent]
	}
	return false
}

func (st *state) get(id int64) (*entity, *apiError) {
	e, ok := st.entities[id]
	if !ok || id == rootEntityID {
		return nil, notFound(id)
	}
	if !st.visible(e) {
		return nil, errf(http.StatusNotFound, "Entity %s is in trash can.", synID(id))
	}
	return e, nil
}

// benefactor is the nearest entity, itself included, that carries an ACL.
func (st *state) benefactor(e *entity) *entity {
	for e != nil && e.id != rootEntityID {
		if e.acl != nil {
			return e
		}
		e = st.entities[e.parent]
	}
	return nil
}

func (st *state) access(uid int64, e *entity) Access {
	b := st.benefactor(e)
	if b == nil {
		return 0
	}
	return b.acl[uid]
}

func (st *state) require(uid int64, e *entity, need Access) *apiError {
	if st.access(uid, e)&need != need {
		return errf(http.StatusForbidden, "You lack %s access to the requested entity.", accessName(need))
	}
	return nil
}

func accessName(a Access) string {
	names := []string{"READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE", "CHANGE_PERMISSIONS"}
	var out []string
	for i, n := range names {
		if a&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, "+")
}

// setAccess gives uid exactly a on e, first copying the inherited ACL onto e
// when e has none of its own (as the web UI's "create local sharing settings").
func (st *state) setAccess(e *entity, uid int64, a Access) {
	if e.acl == nil {
		inherited := map[int64]Access{}
		if b := st.benefactor(e); b != nil {
			for k, v := range b.acl {
				inherited[k] = v
			}
		}
		e.acl = inherited
	}
	if a == 0 {
		delete(e.acl, uid)
		return
	}
	e.acl[uid] = a
}

// uploadSetting is the nearest upload-destination setting on e or above it.
func (st *state) uploadSetting(e *entity) *projectSetting {
	for e != nil && e.id != rootEntityID {
		if e.setting != nil {
			return e.setting
		}
		e = st.entities[e.parent]
	}
	return nil
}

// location is the storage location new files under e go to.
func (st *state) location(e *entity) *storageLocation {
	if s := st.uploadSetting(e); s != nil && len(s.locations) > 0 {
		return st.locations[s.locations[0]]
	}
	return st.locations[defaultLocation]
}

// stsLocation is the STS storage location governing e, or nil.
func (st *state) stsLocation(e *entity) *storageLocation {
	if l := st.location(e); l.stsEnabled {
		return l
	}
	return nil
}

func (st *state) children(parent int64) []*entity {
	var out []*entity
	for _, e := range st.entities {
		if e.parent == parent && !e.trashed && e.id != rootEntityID {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (st *state) childNamed(parent int64, name string) *entity {
	for _, e := range st.children(parent) {
		if e.name == name {
			return e
		}
	}
	return nil
}

func (st *state) hasDescendantSetting(e *entity) bool {
	for _, c := range st.children(e.id) {
		if c.setting != nil || st.hasDescendantSetting(c) {
			return true
		}
	}
	return false
}

// newEntity is POST /entity after decoding: every creation rule in one place.
func (st *state) createEntity(uid int64, in entityJSON) (*entity, *apiError) {
	var parent *entity
	switch in.ConcreteType {
	case typeProject:
		parent = st.entities[rootEntityID]
	case typeFolder, typeFile:
		pid, ok := parseSynID(in.ParentID)
		if !ok {
			return nil, errf(http.StatusBadRequest, "parentId is required")
		}
		p, aerr := st.get(pid)
		if aerr != nil {
			return nil, aerr
		}
		if aerr := st.require(uid, p, Create); aerr != nil {
			return nil, aerr
		}
		parent = p
	default:
		if in.ParentID != "" {
			if pid, ok := parseSynID(in.ParentID); ok {
				if p, aerr := st.get(pid); aerr == nil && st.stsLocation(p) != nil {
					return nil, errf(http.StatusBadRequest, "Can only create Files and Folders inside STS-enabled folders")
				}
			}
		}
		return nil, errf(http.StatusBadRequest, "concreteType %q is not supported by the emulator", in.ConcreteType)
	}
	var handle *fileHandle
	if in.ConcreteType == typeFile {
		h, aerr := st.ownHandle(uid, in.DataFileHandleID)
		if aerr != nil {
			return nil, aerr
		}
		if aerr := st.checkHandleLocation(parent, h); aerr != nil {
			return nil, aerr
		}
		handle = h
		if in.Name == "" {
			in.Name = h.fileName
		}
	}
	name, err := validName(in.Name)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "%s", err.Error())
	}
	in.Name = name
	if aerr := st.checkRoom(parent); aerr != nil {
		return nil, aerr
	}
	if st.childNamed(parent.id, in.Name) != nil {
		return nil, errf(http.StatusConflict, "An entity with the name: %s already exists with a parentId: %s", in.Name, synID(parent.id))
	}
	t := st.now()
	e := &entity{
		id: st.newID(), name: in.Name, parent: parent.id, kind: in.ConcreteType, etag: newUUID(),
		description: in.Description, createdOn: t, modifiedOn: t, createdBy: uid, modifiedBy: uid,
	}
	if e.kind == typeProject {
		e.acl = map[int64]Access{uid: FullAccess}
	}
	if handle != nil {
		label := in.VersionLabel
		if label == "" {
			label = "1"
		}
		e.versions = []version{{number: 1, label: label, comment: in.VersionComment, handleID: handle.id, modifiedOn: t, modifiedBy: uid}}
	}
	st.entities[e.id] = e
	return e, nil
}

func (st *state) ownHandle(uid int64, idText string) (*fileHandle, *apiError) {
	hid, ok := parseSynID(idText)
	if !ok {
		return nil, errf(http.StatusBadRequest, "dataFileHandleId is required")
	}
	h, ok := st.handles[hid]
	if !ok {
		return nil, errf(http.StatusNotFound, "FileHandle %d does not exist", hid)
	}
	if h.createdBy != uid {
		return nil, errf(http.StatusForbidden, "Only the creator of a FileHandle can assign it to an Entity.  Creator: %d Current user: %d", h.createdBy, uid)
	}
	return h, nil
}

// checkHandleLocation enforces that a file in an STS folder lives in that
// folder's bucket and under its base key.
// (StsManagerImpl.validateCanAddFile), in both directions.
func (st *state) checkHandleLocation(parent *entity, h *fileHandle) *apiError {
	loc := st.stsLocation(parent)
	if loc == nil {
		if hl := st.locations[h.location]; hl != nil && hl.stsEnabled {
			return errf(http.StatusBadRequest, "Files in STS-enabled storage locations can only be placed in folders with the same storage location")
		}
		return nil
	}
	if h.location != loc.id || h.bucket != loc.bucket || !underBaseKey(h.key, loc.baseKey) {
		return errf(http.StatusBadRequest, "Folders with STS-enabled storage locations can only accept files with the same storage location")
	}
	return nil
}

// checkRoom enforces the per-parent child limit and the depth limit.
func (st *state) checkRoom(parent *entity) *apiError {
	if len(st.children(parent.id)) >= maxChildren {
		return errf(http.StatusBadRequest, "Limit of %d children exceeded for parent: %s", maxChildren, synID(parent.id))
	}
	depth := 0
	for a := parent; a != nil && a.id != rootEntityID; a = st.entities[a.parent] {
		depth++
	}
	if depth >= maxDepth {
		return errf(http.StatusBadRequest, "Exceeded the maximum hierarchical depth of: %d for parent: %s", maxDepth, synID(parent.id))
	}
	return nil
}

func underBaseKey(key, baseKey string) bool {
	return baseKey == "" || strings.HasPrefix(key, baseKey+"/")
}

// updateEntity is PUT /entity/{id}: etag check, rename, move and new versions.
func (st *state) updateEntity(uid int64, id int64, in entityJSON) (*entity, *apiError) {
	e, aerr := st.get(id)
	if aerr != nil {
		return nil, aerr
	}
	if bid, ok := parseSynID(in.ID); !ok || bid != id {
		return nil, errf(http.StatusBadRequest, "The entity id in the body does not match the id in the URL")
	}
	if aerr := st.require(uid, e, Update); aerr != nil {
		return nil, aerr
	}
	if in.Etag != e.etag {
		return nil, errf(http.StatusPreconditionFailed, "Object: %s was updated since you last fetched it, retrieve it again and re-apply the update", synID(id))
	}
	if in.ConcreteType != "" && in.ConcreteType != e.kind {
		return nil, errf(http.StatusBadRequest, "Cannot change the concreteType of an entity")
	}
	parent := st.entities[e.parent]
	if e.kind != typeProject {
		pid, ok := parseSynID(in.ParentID)
		if !ok {
			return nil, errf(http.StatusBadRequest, "parentId is required")
		}
		if pid != e.parent {
			np, aerr := st.checkMove(uid, e, pid)
			if aerr != nil {
				return nil, aerr
			}
			parent = np
		}
	}
	name, err := validName(in.Name)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "%s", err.Error())
	}
	in.Name = name
	if parent.id != e.parent {
		if aerr := st.checkRoom(parent); aerr != nil {
			return nil, aerr
		}
	}
	if other := st.childNamed(parent.id, in.Name); other != nil && other.id != e.id {
		return nil, errf(http.StatusConflict, "An entity with the name: %s already exists with a parentId: %s", in.Name, synID(parent.id))
	}
	var newHandle *fileHandle
	if e.kind == typeFile {
		cur := e.current()
		hid, _ := parseSynID(in.DataFileHandleID)
		if hid != cur.handleID {
			h, aerr := st.ownHandle(uid, in.DataFileHandleID)
			if aerr != nil {
				return nil, aerr
			}
			if aerr := st.checkHandleLocation(parent, h); aerr != nil {
				return nil, aerr
			}
			newHandle = h
		}
	}
	t := st.now()
	e.name, e.parent, e.description = in.Name, parent.id, in.Description
	e.etag, e.modifiedOn, e.modifiedBy = newUUID(), t, uid
	if newHandle != nil {
		cur := e.current()
		if st.handles[cur.handleID].md5 == newHandle.md5 {
			cur.handleID = newHandle.id
		} else {
			n := cur.number + 1
			label := in.VersionLabel
			if label == "" || label == cur.label {
				label = fmt.Sprint(n)
			}
			e.versions = append(e.versions, version{number: n, label: label, comment: in.VersionComment, handleID: newHandle.id, modifiedOn: t, modifiedBy: uid})
		}
	}
	return e, nil
}

// checkMove applies Synapse's move rules, STS ones included.
func (st *state) checkMove(uid int64, e *entity, newParent int64) (*entity, *apiError) {
	np, aerr := st.get(newParent)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := st.require(uid, np, Create); aerr != nil {
		return nil, aerr
	}
	for a := np; a != nil && a.id != rootEntityID; a = st.entities[a.parent] {
		if a.id == e.id {
			return nil, errf(http.StatusBadRequest, "Cannot move an entity into itself or one of its descendants")
		}
	}
	from, to := st.location(st.entities[e.parent]), st.location(np)
	if e.setting != nil {
		if st.stsLocation(np) != nil {
			return nil, errf(http.StatusBadRequest, "Cannot place an STS-enabled folder inside another STS-enabled folder")
		}
		return np, nil
	}
	switch {
	case from.id == to.id:
	case to.stsEnabled && e.kind == typeFolder && !from.stsEnabled:
		return nil, errf(http.StatusBadRequest, "Non-STS-enabled folders cannot be placed inside STS-enabled folders")
	case from.stsEnabled && e.kind == typeFolder:
		return nil, errf(http.StatusBadRequest, "Folders in STS-enabled storage locations can only be placed in folders with the same storage location")
	case from.stsEnabled || to.stsEnabled:
		return nil, errf(http.StatusBadRequest, "Files in STS-enabled storage locations can only be placed in folders with the same storage location")
	}
	return np, nil
}

// trash is DELETE /entity/{id}; skipTrash purges instead.
func (st *state) trash(uid, id int64, skipTrash bool) *apiError {
	e, aerr := st.get(id)
	if aerr != nil {
		return aerr
	}
	if aerr := st.require(uid, e, Delete); aerr != nil {
		return aerr
	}
	if skipTrash {
		st.purge(e)
		return nil
	}
	e.trashed = true
	e.etag = newUUID()
	return nil
}

func (st *state) purge(e *entity) {
	for _, c := range st.children(e.id) {
		st.purge(c)
	}
	delete(st.entities, e.id)
}

// restore is PUT /trashcan/restore/{id}: back to the original parent.
func (st *state) restore(uid, id int64) *apiError {
	e, ok := st.entities[id]
	if !ok || !e.trashed {
		return errf(http.StatusNotFound, "The trash can has no entity %s", synID(id))
	}
	if aerr := st.require(uid, e, Delete); aerr != nil {
		return aerr
	}
	p := st.entities[e.parent]
	if p == nil || !st.visible(p) {
		return errf(http.StatusNotFound, "The original parent of %s no longer exists", synID(id))
	}
	if st.childNamed(p.id, e.name) != nil {
		return errf(http.StatusConflict, "An entity with the name: %s already exists with a parentId: %s", e.name, synID(p.id))
	}
	e.trashed = false
	e.etag = newUUID()
	return nil
}

func (st *state) createLocation(uid int64, in locationJSON, objectText func(bucket, key string) (string, error)) (*storageLocation, *apiError) {
	u := st.users[uid]
	l := &storageLocation{concrete: in.ConcreteType, stsEnabled: in.StsEnabled, description: in.Description, createdBy: uid}
	switch in.ConcreteType {
	case typeS3Location:
		l.bucket = ManagedBucket
		if in.StsEnabled {
			l.baseKey = fmt.Sprintf("%d/%s", uid, newUUID())
		}
	case typeExtLocation:
		if in.Bucket == "" {
			return nil, errf(http.StatusBadRequest, "bucket is required")
		}
		l.bucket, l.baseKey = in.Bucket, strings.Trim(in.BaseKey, "/")
		l.endpointURL = in.EndpointURL
		if l.endpointURL == "" {
			l.endpointURL = "https://s3.amazonaws.com"
		}
		ownerKey := "owner.txt"
		if l.baseKey != "" {
			ownerKey = l.baseKey + "/owner.txt"
		}
		text, err := objectText(l.bucket, ownerKey)
		if err != nil {
			return nil, errf(http.StatusBadRequest, "Did not find S3 object at key %s from bucket %s. If the S3 object is in a folder, please make sure you specify a trailing '/' in the folder. For example, if you have an object named \"owner.txt\" in folder \"myfolder\", you should specify \"myfolder/\" as the base key.", ownerKey, l.bucket)
		}
		if !ownerMatches(text, u) {
			return nil, errf(http.StatusBadRequest, "The Synapse username is not in the owner.txt file under %s in bucket %s", ownerKey, l.bucket)
		}
	default:
		return nil, errf(http.StatusBadRequest, "concreteType %q is not supported by the emulator", in.ConcreteType)
	}
	// The service de-duplicates identical settings of one user, so a retried
	// create returns the first one. A managed STS location gets a fresh base
	// key above and so is always new.
	for _, old := range st.locations {
		if old.id != defaultLocation && old.createdBy == uid && old.concrete == l.concrete && old.bucket == l.bucket &&
			old.baseKey == l.baseKey && old.stsEnabled == l.stsEnabled && old.endpointURL == l.endpointURL && old.description == l.description {
			return old, nil
		}
	}
	l.id, l.createdOn, l.etag = st.newID(), st.now(), newUUID()
	st.locations[l.id] = l
	return l, nil
}

func ownerMatches(text string, u *user) bool {
	for _, f := range strings.Fields(text) {
		if f == u.userName || f == fmt.Sprint(u.id) {
			return true
		}
	}
	return false
}

// createSetting is POST /projectSettings, with the STS placement rules.
func (st *state) createSetting(uid int64, in settingJSON) (*projectSetting, *apiError) {
	if in.ConcreteType != typeUploadList || in.SettingsType != "upload" {
		return nil, errf(http.StatusBadRequest, "Only UploadDestinationListSetting with settingsType upload is supported")
	}
	id, ok := parseSynID(in.ProjectID)
	if !ok {
		return nil, errf(http.StatusBadRequest, "projectId is required")
	}
	e, aerr := st.get(id)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := st.require(uid, e, Update|Create); aerr != nil {
		return nil, aerr
	}
	if e.setting != nil {
		return nil, errf(http.StatusConflict, "A project setting of type 'upload' already exists for %s", synID(id))
	}
	if len(in.Locations) == 0 {
		return nil, errf(http.StatusBadRequest, "locations must not be empty")
	}
	sts := false
	for _, lid := range in.Locations {
		l, ok := st.locations[lid]
		if !ok {
			return nil, errf(http.StatusBadRequest, "Storage location %d does not exist", lid)
		}
		if l.id != defaultLocation && l.createdBy != uid {
			return nil, errf(http.StatusForbidden, "Only the creator of storage location %d may use it in a project setting", lid)
		}
		sts = sts || l.stsEnabled
	}
	if sts {
		switch {
		case e.kind != typeFolder:
			return nil, errf(http.StatusBadRequest, "Can only enable STS on a folder")
		case len(in.Locations) != 1:
			return nil, errf(http.StatusBadRequest, "An STS-enabled folder cannot add other upload destinations")
		case len(st.children(e.id)) > 0:
			return nil, errf(http.StatusBadRequest, "Can only enable STS on an empty folder")
		case st.stsLocation(st.entities[e.parent]) != nil || st.hasDescendantSetting(e):
			return nil, errf(http.StatusBadRequest, "Cannot place an STS-enabled folder inside another STS-enabled folder")
		}
	}
	s := &projectSetting{id: st.newID(), entity: e.id, locations: append([]int64(nil), in.Locations...), etag: newUUID()}
	e.setting = s
	return s, nil
}
