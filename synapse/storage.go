package synapse

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// CreateStorageLocation registers a storage location. For an external bucket
// Synapse first checks that baseKey/owner.txt names the caller (else
// IsBadRequest). Synapse answers an identical setting by the same user with
// the existing one, so retrying this is safe.
func (c *Client) CreateStorageLocation(ctx context.Context, s *StorageLocationSetting) (*StorageLocationSetting, error) {
	var out StorageLocationSetting
	if err := c.post(ctx, c.repo, "/storageLocation", s, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetStorageLocation reads a location; only its creator may (else
// IsForbidden), so readers should use UploadDestination instead.
func (c *Client) GetStorageLocation(ctx context.Context, id int64) (*StorageLocationSetting, error) {
	var out StorageLocationSetting
	if err := c.get(ctx, c.repo, "/storageLocation/"+strconv.FormatInt(id, 10), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateProjectSetting attaches storage locations to a project or folder
// (for STS: an empty folder, one location). Empty ConcreteType and
// SettingsType default to an upload-destination list. If a retried attempt
// sees a conflict after an earlier attempt may have landed, an identical
// existing upload setting is returned instead of the error.
func (c *Client) CreateProjectSetting(ctx context.Context, p *ProjectSetting) (*ProjectSetting, error) {
	body := *p
	if body.ConcreteType == "" {
		body.ConcreteType = TypeUploadDestinationListSetting
	}
	if body.SettingsType == "" {
		body.SettingsType = SettingsTypeUpload
	}
	var out ProjectSetting
	oc, err := c.do(ctx, &request{method: http.MethodPost, base: c.repo, path: "/projectSettings", in: &body, out: &out})
	if err == nil {
		if oc.empty {
			return nil, fmt.Errorf("synapse: POST /projectSettings: empty answer")
		}
		return &out, nil
	}
	if !IsConflict(err) || !oc.maybeApplied || body.SettingsType != SettingsTypeUpload {
		return nil, err
	}
	got, gerr := c.GetUploadSetting(ctx, body.ProjectID)
	if gerr != nil {
		return nil, fmt.Errorf("%w (resolving retried create: %w)", err, gerr)
	}
	if got == nil || !slices.Equal(got.Locations, body.Locations) {
		return nil, err
	}
	return got, nil
}

// GetUploadSetting returns the upload setting set on entityID itself, or
// nil, nil when it has none (it does not look at ancestors; use
// UploadDestination for the effective location).
func (c *Client) GetUploadSetting(ctx context.Context, entityID string) (*ProjectSetting, error) {
	var out ProjectSetting
	oc, err := c.do(ctx, &request{
		method: http.MethodGet, base: c.repo,
		path: "/projectSettings/" + url.PathEscape(entityID) + "/type/" + SettingsTypeUpload, out: &out,
	})
	if err != nil {
		return nil, err
	}
	if oc.empty {
		return nil, nil
	}
	return &out, nil
}
