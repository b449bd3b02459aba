package synapse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// batchLimit is the server's cap on items per POST /fileHandle/batch.
const batchLimit = 100

// EntityFileHandles returns the current version's handles, preview
// included; needs DOWNLOAD.
func (c *Client) EntityFileHandles(ctx context.Context, id string) ([]S3FileHandle, error) {
	var resp struct {
		List []S3FileHandle `json:"list"`
	}
	if err := c.get(ctx, c.repo, entityPath(id)+"/filehandles", &resp); err != nil {
		return nil, err
	}
	return resp.List, nil
}

// DataFileHandle returns the handle holding e's bytes (not its preview).
// It reads the entity's current version, so e should be current too.
func (c *Client) DataFileHandle(ctx context.Context, e *Entity) (*S3FileHandle, error) {
	if e.DataFileHandleID == "" {
		return nil, fmt.Errorf("synapse: %s (%s) has no data file handle", e.ID, e.ConcreteType)
	}
	list, err := c.EntityFileHandles(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].ID == e.DataFileHandleID {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("synapse: %s: file handle %s not among the entity's handles (entity changed?)", e.ID, e.DataFileHandleID)
}

// BatchFileHandles fetches many handles in few calls, splitting into the
// server's 100-item chunks. Results are in request order; per-item failures
// (FailureNotFound, FailureUnauthorized) are in FailureCode, not the error.
func (c *Client) BatchFileHandles(ctx context.Context, reqs []FileHandleAssociation) ([]FileHandleResult, error) {
	out := make([]FileHandleResult, 0, len(reqs))
	for start := 0; start < len(reqs); start += batchLimit {
		chunk := make([]FileHandleAssociation, 0, batchLimit)
		for _, r := range reqs[start:min(start+batchLimit, len(reqs))] {
			if r.AssociateObjectType == "" {
				r.AssociateObjectType = AssociateFileEntity
			}
			chunk = append(chunk, r)
		}
		var resp BatchFileHandleResponse
		err := c.post(ctx, c.file, "/fileHandle/batch", BatchFileHandleRequest{
			RequestedFiles: chunk, IncludeFileHandles: true, IncludePreSignedURLs: false,
		}, &resp)
		if err != nil {
			return nil, err
		}
		if len(resp.RequestedFiles) != len(chunk) {
			return nil, fmt.Errorf("synapse: POST /fileHandle/batch: asked for %d handles, got %d", len(chunk), len(resp.RequestedFiles))
		}
		out = append(out, resp.RequestedFiles...)
	}
	return out, nil
}

// UploadDestination returns where new files under entityID would go: the
// effective storage location, inherited from the nearest ancestor setting.
// Needs only view, which is why synfs uses it to learn bucket and baseKey.
func (c *Client) UploadDestination(ctx context.Context, entityID string) (*UploadDestination, error) {
	var d UploadDestination
	if err := c.get(ctx, c.file, entityPath(entityID)+"/uploadDestination", &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// StsCredentials vends temporary S3 keys for entityID's STS storage. A
// location without STS, or read_write on Synapse storage, is IsBadRequest;
// missing permission or token scope is IsForbidden.
func (c *Client) StsCredentials(ctx context.Context, entityID string, perm StsPermission) (*StsCredentials, error) {
	if perm != ReadOnly && perm != ReadWrite {
		return nil, fmt.Errorf("synapse: StsCredentials: unknown permission %q", perm)
	}
	var cr StsCredentials
	err := c.call(ctx, &request{
		method: http.MethodGet, base: c.repo, path: entityPath(entityID) + "/sts",
		query: url.Values{"permission": {string(perm)}}, out: &cr,
	})
	if err != nil {
		return nil, err
	}
	if cr.AccessKeyID == "" || cr.SecretAccessKey == "" || cr.Expiration.IsZero() {
		return nil, fmt.Errorf("synapse: GET %s/sts: incomplete credentials (bucket %q)", entityPath(entityID), cr.Bucket)
	}
	return &cr, nil
}

// externalS3Request is exactly what POST /externalFileHandle/s3 takes; the
// server assigns everything else.
type externalS3Request struct {
	ConcreteType      string `json:"concreteType"`
	StorageLocationID int64  `json:"storageLocationId"`
	BucketName        string `json:"bucketName"`
	Key               string `json:"key"`
	ContentMD5        string `json:"contentMd5"`
	ContentSize       int64  `json:"contentSize"`
	FileName          string `json:"fileName,omitempty"`
	ContentType       string `json:"contentType,omitempty"`
}

// CreateExternalS3FileHandle registers an object already uploaded to an
// external bucket. Only the storage location's creator may call it (else
// IsForbidden); a missing object or a key outside baseKey is IsBadRequest.
// A retry after a lost answer may register a second, unused handle: harmless,
// as handles are immutable and only the returned one gets linked.
func (c *Client) CreateExternalS3FileHandle(ctx context.Context, h *S3FileHandle) (*S3FileHandle, error) {
	if h.StorageLocationID == 0 || h.BucketName == "" || h.Key == "" || len(h.ContentMD5) != 32 {
		return nil, errors.New("synapse: CreateExternalS3FileHandle needs storageLocationId, bucketName, key and a 32-hex contentMd5")
	}
	var out S3FileHandle
	err := c.post(ctx, c.file, "/externalFileHandle/s3", externalS3Request{
		ConcreteType:      TypeS3FileHandle,
		StorageLocationID: h.StorageLocationID,
		BucketName:        h.BucketName,
		Key:               h.Key,
		ContentMD5:        h.ContentMD5,
		ContentSize:       h.ContentSize,
		FileName:          h.FileName,
		ContentType:       h.ContentType,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
