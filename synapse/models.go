package synapse

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"
)

// Entity concrete types. Synapse entities are a union discriminated by
// concreteType; one struct covers the three kinds synfs handles.
const (
	TypeProject = "org.sagebionetworks.repo.model.Project"
	TypeFolder  = "org.sagebionetworks.repo.model.Folder"
	TypeFile    = "org.sagebionetworks.repo.model.FileEntity"
)

// AnonymousPrincipalID is the ownerId Synapse reports for a caller without a
// token: a profile with this id means "not logged in", not an error.
const AnonymousPrincipalID = "273950"

// Entity is a Project, Folder or FileEntity. The file fields are empty for
// containers.
type Entity struct {
	ID           string    `json:"id,omitempty"`
	Name         string    `json:"name,omitempty"`
	ParentID     string    `json:"parentId,omitempty"`
	ConcreteType string    `json:"concreteType"`
	Etag         string    `json:"etag,omitempty"`
	Description  string    `json:"description,omitempty"`
	CreatedOn    time.Time `json:"createdOn,omitzero"`
	ModifiedOn   time.Time `json:"modifiedOn,omitzero"`
	CreatedBy    string    `json:"createdBy,omitempty"`
	ModifiedBy   string    `json:"modifiedBy,omitempty"`

	DataFileHandleID string `json:"dataFileHandleId,omitempty"`
	VersionNumber    int64  `json:"versionNumber,omitempty"`
	VersionLabel     string `json:"versionLabel,omitempty"`
	VersionComment   string `json:"versionComment,omitempty"`
	IsLatestVersion  bool   `json:"isLatestVersion,omitempty"`

	// Extra keeps the fields this package does not model (fileNameOverride,
	// activityId, ...). PUT /entity replaces the whole entity, so a rename
	// must send them back or Synapse would clear them.
	Extra map[string]json.RawMessage `json:"-"`
}

// entityFields has Entity's fields without its methods, so the custom
// (un)marshalers can delegate to encoding/json without recursing.
type entityFields Entity

// entityKeys lists the JSON names Entity models, so Extra never shadows them.
func entityKeys() map[string]bool {
	t := reflect.TypeFor[entityFields]()
	keys := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

// UnmarshalJSON decodes the modelled fields and keeps the rest in Extra.
func (e *Entity) UnmarshalJSON(b []byte) error {
	var f entityFields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k := range entityKeys() {
		delete(all, k)
	}
	f.Extra = nil
	if len(all) > 0 {
		f.Extra = all
	}
	*e = Entity(f)
	return nil
}

// MarshalJSON writes the modelled fields plus Extra; a modelled field always
// wins, even when it is empty and omitted, so clearing it sticks.
func (e Entity) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(entityFields(e))
	if err != nil || len(e.Extra) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	known := entityKeys()
	for k, v := range e.Extra {
		if !known[k] {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

func (e *Entity) IsFolder() bool  { return e.ConcreteType == TypeFolder }
func (e *Entity) IsFile() bool    { return e.ConcreteType == TypeFile }
func (e *Entity) IsProject() bool { return e.ConcreteType == TypeProject }

// NewFolder is the body for creating a folder with CreateEntity.
func NewFolder(name, parentID string) *Entity {
	return &Entity{Name: name, ParentID: parentID, ConcreteType: TypeFolder}
}

// NewFile is the body for creating a FileEntity; the caller must own the
// file handle.
func NewFile(name, parentID, fileHandleID string) *Entity {
	return &Entity{Name: name, ParentID: parentID, ConcreteType: TypeFile, DataFileHandleID: fileHandleID}
}

// EntityHeader is what listings return: no size and no file handle id, so a
// file's bytes need a further call.
type EntityHeader struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	Type            string    `json:"type"` // full class name, as concreteType
	VersionNumber   int64     `json:"versionNumber,omitempty"`
	VersionLabel    string    `json:"versionLabel,omitempty"`
	IsLatestVersion bool      `json:"isLatestVersion,omitempty"`
	BenefactorID    int64     `json:"benefactorId,omitempty"`
	CreatedOn       time.Time `json:"createdOn,omitzero"`
	ModifiedOn      time.Time `json:"modifiedOn,omitzero"`
	CreatedBy       string    `json:"createdBy,omitempty"`
	ModifiedBy      string    `json:"modifiedBy,omitempty"`
}

func (h EntityHeader) IsFolder() bool  { return h.Type == TypeFolder }
func (h EntityHeader) IsFile() bool    { return h.Type == TypeFile }
func (h EntityHeader) IsProject() bool { return h.Type == TypeProject }

// File handle concrete types.
const TypeS3FileHandle = "org.sagebionetworks.repo.model.file.S3FileHandle"

// File handle status values.
const (
	FileHandleAvailable = "AVAILABLE"
	FileHandleUnlinked  = "UNLINKED"
	FileHandleArchived  = "ARCHIVED"
)

// S3FileHandle locates a file's immutable bytes. Its id is a JSON string but
// storageLocationId a number: that is how Synapse sends them.
type S3FileHandle struct {
	ID                string    `json:"id,omitempty"`
	ConcreteType      string    `json:"concreteType,omitempty"`
	BucketName        string    `json:"bucketName,omitempty"`
	Key               string    `json:"key,omitempty"`
	ContentSize       int64     `json:"contentSize"`
	ContentMD5        string    `json:"contentMd5,omitempty"` // lowercase hex
	ContentType       string    `json:"contentType,omitempty"`
	FileName          string    `json:"fileName,omitempty"`
	StorageLocationID int64     `json:"storageLocationId,omitempty"`
	Status            string    `json:"status,omitempty"`
	Etag              string    `json:"etag,omitempty"`
	CreatedBy         string    `json:"createdBy,omitempty"`
	CreatedOn         time.Time `json:"createdOn,omitzero"`
	IsPreview         bool      `json:"isPreview,omitempty"`
	PreviewID         string    `json:"previewId,omitempty"`
}

// StsPermission is the access asked of GET /entity/{id}/sts.
type StsPermission string

const (
	ReadOnly  StsPermission = "read_only"
	ReadWrite StsPermission = "read_write"
)

// StsCredentials are temporary AWS keys scoped to bucket/baseKey. They are
// secrets: String, GoString and LogValue hide the keys.
type StsCredentials struct {
	Bucket          string    `json:"bucket"`
	BaseKey         string    `json:"baseKey,omitempty"` // empty: the whole bucket
	AccessKeyID     string    `json:"accessKeyId"`
	SecretAccessKey string    `json:"secretAccessKey"`
	SessionToken    string    `json:"sessionToken"`
	Expiration      time.Time `json:"expiration"` // always trust this, never a fixed lifetime
}

func (c StsCredentials) String() string {
	return fmt.Sprintf("StsCredentials{Bucket:%q BaseKey:%q Expiration:%s keys:[REDACTED]}",
		c.Bucket, c.BaseKey, c.Expiration.Format(time.RFC3339))
}

func (c StsCredentials) GoString() string { return c.String() }

func (c StsCredentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("bucket", c.Bucket),
		slog.String("baseKey", c.BaseKey),
		slog.Time("expiration", c.Expiration),
	)
}

// Upload destination concrete types.
const (
	TypeS3UploadDestination         = "org.sagebionetworks.repo.model.file.S3UploadDestination"
	TypeExternalS3UploadDestination = "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination"
)

// UploadDestination is a folder's effective storage location (inherited from
// the nearest ancestor with a setting). Bucket and EndpointURL are set only
// for external S3.
type UploadDestination struct {
	ConcreteType      string `json:"concreteType"`
	StorageLocationID int64  `json:"storageLocationId"`
	UploadType        string `json:"uploadType,omitempty"`
	BaseKey           string `json:"baseKey,omitempty"`
	StsEnabled        bool   `json:"stsEnabled,omitempty"`
	Bucket            string `json:"bucket,omitempty"`
	EndpointURL       string `json:"endpointUrl,omitempty"`
}

// IsExternal reports a user-owned bucket: the only kind synfs can write to.
func (d *UploadDestination) IsExternal() bool {
	return d.ConcreteType == TypeExternalS3UploadDestination
}

// Storage location concrete types.
const (
	TypeS3StorageLocation         = "org.sagebionetworks.repo.model.project.S3StorageLocationSetting"
	TypeExternalS3StorageLocation = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
)

// StorageLocationSetting is one struct for Synapse-managed and external S3
// locations. CreatedBy is a number here, unlike on entities and handles,
// because that is how Synapse sends it.
type StorageLocationSetting struct {
	ConcreteType      string    `json:"concreteType"`
	StorageLocationID int64     `json:"storageLocationId,omitempty"`
	UploadType        string    `json:"uploadType,omitempty"`
	StsEnabled        bool      `json:"stsEnabled,omitempty"`
	Bucket            string    `json:"bucket,omitempty"`
	BaseKey           string    `json:"baseKey,omitempty"`
	EndpointURL       string    `json:"endpointUrl,omitempty"`
	Description       string    `json:"description,omitempty"`
	CreatedBy         int64     `json:"createdBy,omitempty"`
	CreatedOn         time.Time `json:"createdOn,omitzero"`
	Etag              string    `json:"etag,omitempty"`
}

// Project setting types.
const (
	TypeUploadDestinationListSetting = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"
	SettingsTypeUpload               = "upload"
)

// ProjectSetting binds storage locations to a project or folder (despite the
// name, folders carry them too; STS folders must).
type ProjectSetting struct {
	ConcreteType string  `json:"concreteType"`
	ID           string  `json:"id,omitempty"`
	ProjectID    string  `json:"projectId"`
	SettingsType string  `json:"settingsType"`
	Locations    []int64 `json:"locations"`
	Etag         string  `json:"etag,omitempty"`
}

// UserProfile is the caller's identity; OwnerID AnonymousPrincipalID means
// no token.
type UserProfile struct {
	OwnerID   string   `json:"ownerId"`
	UserName  string   `json:"userName"`
	Emails    []string `json:"emails,omitempty"`
	FirstName string   `json:"firstName,omitempty"`
	LastName  string   `json:"lastName,omitempty"`
}

// IsAnonymous reports a call made without (valid) credentials.
func (p *UserProfile) IsAnonymous() bool { return p.OwnerID == AnonymousPrincipalID }

// ErrorResponse is Synapse's error body.
type ErrorResponse struct {
	ConcreteType string `json:"concreteType,omitempty"`
	Reason       string `json:"reason"`
	ErrorCode    string `json:"errorCode,omitempty"`
}

// Associate object types for FileHandleAssociation: Synapse authorises a
// handle download through the object that uses it.
const (
	AssociateFileEntity  = "FileEntity"
	AssociateTableEntity = "TableEntity"
)

// FileHandleAssociation asks for one handle through the object using it.
// An empty AssociateObjectType means AssociateFileEntity.
type FileHandleAssociation struct {
	FileHandleID        string `json:"fileHandleId"`
	AssociateObjectID   string `json:"associateObjectId"`
	AssociateObjectType string `json:"associateObjectType"`
}

// Per-item failure codes in a batch answer.
const (
	FailureNotFound     = "NOT_FOUND"
	FailureUnauthorized = "UNAUTHORIZED"
)

// BatchFileHandleRequest is the body of POST /fileHandle/batch (at most 100
// items; BatchFileHandles splits for you).
type BatchFileHandleRequest struct {
	RequestedFiles              []FileHandleAssociation `json:"requestedFiles"`
	IncludeFileHandles          bool                    `json:"includeFileHandles"`
	IncludePreSignedURLs        bool                    `json:"includePreSignedURLs"`
	IncludePreviewPreSignedURLs bool                    `json:"includePreviewPreSignedURLs,omitempty"`
}

// FileHandleResult is one item of a batch answer; FailureCode set means
// FileHandle is nil.
type FileHandleResult struct {
	FileHandleID string        `json:"fileHandleId"`
	FileHandle   *S3FileHandle `json:"fileHandle,omitempty"`
	PreSignedURL string        `json:"preSignedURL,omitempty"`
	FailureCode  string        `json:"failureCode,omitempty"`
}

// BatchFileHandleResponse answers BatchFileHandleRequest, in request order.
type BatchFileHandleResponse struct {
	RequestedFiles []FileHandleResult `json:"requestedFiles"`
}
