package synapsetest

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The concrete types the emulator understands. Synapse's JSON is a
// discriminated union on concreteType; the emulator keeps its own copies of
// these names so that it never shares code with the client it is testing.
const (
	typeProject     = "org.sagebionetworks.repo.model.Project"
	typeFolder      = "org.sagebionetworks.repo.model.Folder"
	typeFile        = "org.sagebionetworks.repo.model.FileEntity"
	typeS3Handle    = "org.sagebionetworks.repo.model.file.S3FileHandle"
	typeS3Location  = "org.sagebionetworks.repo.model.project.S3StorageLocationSetting"
	typeExtLocation = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
	typeS3Dest      = "org.sagebionetworks.repo.model.file.S3UploadDestination"
	typeExtDest     = "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination"
	typeUploadList  = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"
	typeError       = "org.sagebionetworks.repo.model.ErrorResponse"
)

// Well-known principals and ids of the real service.
const (
	anonymousID     = 273950
	rootEntityID    = 4489
	defaultLocation = 1 // Synapse's own S3 storage without STS
	// ManagedBucket is the bucket that holds Synapse-managed storage.
	ManagedBucket = "proddata.sagebase.org"
)

// Access is a set of Synapse ACL permissions.
type Access uint8

// The permissions synfs cares about. Synapse has more (CHANGE_SETTINGS,
// MODERATE, ...); they gate nothing the emulator serves.
const (
	Read Access = 1 << iota
	Download
	Update
	Create
	Delete
	ChangePermissions

	// ReadDownload is what a data share typically grants: list and read.
	ReadDownload = Read | Download
	// FullAccess is what a project's creator holds.
	FullAccess = Read | Download | Update | Create | Delete | ChangePermissions
)

// nameRE is Synapse's entity name rule (EntityNameValidation).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9,_. \-+()']+$`)

// validName applies NameValidation.validateName: the service stores the
// trimmed name, so "a.txt " becomes "a.txt" (and may collide with it).
func validName(name string) (string, error) {
	trimmed := strings.TrimSpace(name)
	switch {
	case trimmed == "":
		return "", fmt.Errorf("Name cannot be only whitespace or empty string")
	case len(trimmed) > 256:
		return "", fmt.Errorf("Name must be 256 characters or less")
	case !nameRE.MatchString(trimmed):
		return "", fmt.Errorf("Invalid Name: '%s'. Names may only contain: letters, numbers, spaces, underscores, hyphens, periods, plus signs, apostrophes, and parentheses", trimmed)
	}
	return trimmed, nil
}

// The service's structural limits.
const (
	maxChildren = 10000
	maxDepth    = 50
)

type entity struct {
	id          int64
	name        string
	parent      int64
	kind        string
	etag        string
	description string
	createdOn   time.Time
	modifiedOn  time.Time
	createdBy   int64
	modifiedBy  int64
	versions    []version // files only; the last is the current one
	trashed     bool
	acl         map[int64]Access // nil: inherits from the parent (benefactor)
	setting     *projectSetting  // an upload-destination setting on this entity itself
}

type version struct {
	number     int64
	label      string
	comment    string
	handleID   int64
	modifiedOn time.Time
	modifiedBy int64
}

func (e *entity) current() *version {
	if len(e.versions) == 0 {
		return nil
	}
	return &e.versions[len(e.versions)-1]
}

type fileHandle struct {
	id          int64
	bucket      string
	key         string
	size        int64
	md5         string
	contentType string
	fileName    string
	location    int64
	createdBy   int64
	createdOn   time.Time
	etag        string
	isPreview   bool
	preview     int64 // the preview handle Synapse made for this one, 0 if none
}

type storageLocation struct {
	id          int64
	concrete    string
	stsEnabled  bool
	bucket      string
	baseKey     string
	endpointURL string
	description string
	createdBy   int64
	createdOn   time.Time
	etag        string
}

func (l *storageLocation) external() bool { return l.concrete == typeExtLocation }

type projectSetting struct {
	id        int64
	entity    int64
	locations []int64
	etag      string
}

type user struct {
	id       int64
	userName string
	scopes   map[string]bool
}

// synID renders an entity id the way Synapse does.
func synID(id int64) string { return "syn" + strconv.FormatInt(id, 10) }

// parseSynID accepts "syn123" and "123", as the service does.
func parseSynID(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.ToLower(s), "syn")
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

func newUUID() string { return uuid.NewString() }

// randomKey returns n characters from alphabet, for vended AWS keys.
func randomKey(alphabet string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// synapseTime is Synapse's timestamp format: ISO-8601 UTC with milliseconds.
func synapseTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
