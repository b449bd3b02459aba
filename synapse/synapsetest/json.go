package synapsetest

import "strconv"

// The wire shapes of synapse-api.md. Ids of entities and file handles are
// strings on the wire; storage location ids are numbers.

type entityJSON struct {
	ID               string `json:"id,omitempty"`
	Name             string `json:"name"`
	ParentID         string `json:"parentId,omitempty"`
	ConcreteType     string `json:"concreteType"`
	Etag             string `json:"etag,omitempty"`
	Description      string `json:"description,omitempty"`
	CreatedOn        string `json:"createdOn,omitempty"`
	ModifiedOn       string `json:"modifiedOn,omitempty"`
	CreatedBy        string `json:"createdBy,omitempty"`
	ModifiedBy       string `json:"modifiedBy,omitempty"`
	DataFileHandleID string `json:"dataFileHandleId,omitempty"`
	VersionNumber    int64  `json:"versionNumber,omitempty"`
	VersionLabel     string `json:"versionLabel,omitempty"`
	VersionComment   string `json:"versionComment,omitempty"`
	IsLatestVersion  *bool  `json:"isLatestVersion,omitempty"`
}

type headerJSON struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Type            string `json:"type"`
	VersionNumber   int64  `json:"versionNumber,omitempty"`
	VersionLabel    string `json:"versionLabel,omitempty"`
	IsLatestVersion bool   `json:"isLatestVersion"`
	BenefactorID    int64  `json:"benefactorId"`
	CreatedOn       string `json:"createdOn"`
	ModifiedOn      string `json:"modifiedOn"`
	CreatedBy       string `json:"createdBy"`
	ModifiedBy      string `json:"modifiedBy"`
}

type handleJSON struct {
	ID                string `json:"id,omitempty"`
	ConcreteType      string `json:"concreteType"`
	BucketName        string `json:"bucketName"`
	Key               string `json:"key"`
	ContentSize       *int64 `json:"contentSize,omitempty"`
	ContentMd5        string `json:"contentMd5"`
	ContentType       string `json:"contentType,omitempty"`
	FileName          string `json:"fileName,omitempty"`
	StorageLocationID int64  `json:"storageLocationId"`
	Status            string `json:"status,omitempty"`
	Etag              string `json:"etag,omitempty"`
	CreatedBy         string `json:"createdBy,omitempty"`
	CreatedOn         string `json:"createdOn,omitempty"`
	IsPreview         bool   `json:"isPreview"`
	PreviewID         string `json:"previewId,omitempty"`
}

type locationJSON struct {
	ConcreteType      string `json:"concreteType"`
	StorageLocationID int64  `json:"storageLocationId,omitempty"`
	UploadType        string `json:"uploadType,omitempty"`
	StsEnabled        bool   `json:"stsEnabled"`
	Bucket            string `json:"bucket,omitempty"`
	BaseKey           string `json:"baseKey,omitempty"`
	EndpointURL       string `json:"endpointUrl,omitempty"`
	Description       string `json:"description,omitempty"`
	CreatedBy         int64  `json:"createdBy,omitempty"`
	CreatedOn         string `json:"createdOn,omitempty"`
	Etag              string `json:"etag,omitempty"`
}

type settingJSON struct {
	ConcreteType string  `json:"concreteType"`
	ID           string  `json:"id,omitempty"`
	ProjectID    string  `json:"projectId"`
	SettingsType string  `json:"settingsType"`
	Locations    []int64 `json:"locations"`
	Etag         string  `json:"etag,omitempty"`
}

type destinationJSON struct {
	ConcreteType      string `json:"concreteType"`
	StorageLocationID int64  `json:"storageLocationId"`
	UploadType        string `json:"uploadType"`
	StsEnabled        bool   `json:"stsEnabled"`
	BaseKey           string `json:"baseKey,omitempty"`
	Bucket            string `json:"bucket,omitempty"`
	EndpointURL       string `json:"endpointUrl,omitempty"`
}

type stsJSON struct {
	Bucket          string `json:"bucket"`
	BaseKey         string `json:"baseKey,omitempty"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	SessionToken    string `json:"sessionToken"`
	Expiration      string `json:"expiration"`
}

func uidText(id int64) string { return strconv.FormatInt(id, 10) }

func (st *state) entityJSON(e *entity, v *version) entityJSON {
	out := entityJSON{
		ID: synID(e.id), Name: e.name, ParentID: synID(e.parent), ConcreteType: e.kind, Etag: e.etag,
		Description: e.description, CreatedOn: synapseTime(e.createdOn), ModifiedOn: synapseTime(e.modifiedOn),
		CreatedBy: uidText(e.createdBy), ModifiedBy: uidText(e.modifiedBy),
	}
	if v == nil {
		v = e.current()
	}
	if v != nil {
		latest := v.number == e.current().number
		out.DataFileHandleID = uidText(v.handleID)
		out.VersionNumber, out.VersionLabel, out.VersionComment = v.number, v.label, v.comment
		out.IsLatestVersion = &latest
	}
	return out
}

func (st *state) headerJSON(e *entity) headerJSON {
	h := headerJSON{
		ID: synID(e.id), Name: e.name, Type: e.kind, IsLatestVersion: true,
		CreatedOn: synapseTime(e.createdOn), ModifiedOn: synapseTime(e.modifiedOn),
		CreatedBy: uidText(e.createdBy), ModifiedBy: uidText(e.modifiedBy),
	}
	if b := st.benefactor(e); b != nil {
		h.BenefactorID = b.id
	}
	if v := e.current(); v != nil {
		h.VersionNumber, h.VersionLabel = v.number, v.label
	}
	return h
}

func handleToJSON(h *fileHandle) handleJSON {
	size := h.size
	return handleJSON{
		ID: uidText(h.id), ConcreteType: typeS3Handle, BucketName: h.bucket, Key: h.key, ContentSize: &size,
		ContentMd5: h.md5, ContentType: h.contentType, FileName: h.fileName, StorageLocationID: h.location,
		Status: "AVAILABLE", Etag: h.etag, CreatedBy: uidText(h.createdBy), CreatedOn: synapseTime(h.createdOn),
		IsPreview: h.isPreview, PreviewID: previewID(h),
	}
}

func previewID(h *fileHandle) string {
	if h.preview == 0 {
		return ""
	}
	return uidText(h.preview)
}

func locationToJSON(l *storageLocation) locationJSON {
	return locationJSON{
		ConcreteType: l.concrete, StorageLocationID: l.id, UploadType: "S3", StsEnabled: l.stsEnabled,
		Bucket: bucketIfExternal(l), BaseKey: l.baseKey, EndpointURL: l.endpointURL, Description: l.description,
		CreatedBy: l.createdBy, CreatedOn: synapseTime(l.createdOn), Etag: l.etag,
	}
}

// bucketIfExternal hides Synapse's own bucket name where the service does.
func bucketIfExternal(l *storageLocation) string {
	if l.external() {
		return l.bucket
	}
	return ""
}

func settingToJSON(s *projectSetting) settingJSON {
	return settingJSON{ConcreteType: typeUploadList, ID: uidText(s.id), ProjectID: synID(s.entity), SettingsType: "upload", Locations: s.locations, Etag: s.etag}
}

func destinationToJSON(l *storageLocation) destinationJSON {
	d := destinationJSON{ConcreteType: typeS3Dest, StorageLocationID: l.id, UploadType: "S3", StsEnabled: l.stsEnabled, BaseKey: l.baseKey}
	if l.external() {
		d.ConcreteType, d.Bucket, d.EndpointURL = typeExtDest, l.bucket, l.endpointURL
	}
	return d
}

func errorJSON(reason string) map[string]string {
	return map[string]string{"concreteType": typeError, "reason": reason}
}
