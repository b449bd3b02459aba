package synapse

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// UserProfile returns the caller's profile; with no token it is the
// anonymous user (see UserProfile.IsAnonymous), not an error. A bad token is
// IsUnauthorized.
func (c *Client) UserProfile(ctx context.Context) (*UserProfile, error) {
	var p UserProfile
	if err := c.get(ctx, c.repo, "/userProfile", &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// GetEntity returns the current version; a missing or trashed entity is
// IsNotFound.
func (c *Client) GetEntity(ctx context.Context, id string) (*Entity, error) {
	var e Entity
	if err := c.get(ctx, c.repo, entityPath(id), &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// GetEntityVersion returns one version of a FileEntity.
func (c *Client) GetEntityVersion(ctx context.Context, id string, version int) (*Entity, error) {
	var e Entity
	if err := c.get(ctx, c.repo, entityPath(id)+"/version/"+strconv.Itoa(version), &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// childrenRequest / childrenResponse are the POST /entity/children page.
type childrenRequest struct {
	ParentID      string   `json:"parentId"`
	IncludeTypes  []string `json:"includeTypes"`
	SortBy        string   `json:"sortBy"`
	SortDirection string   `json:"sortDirection"`
	NextPageToken string   `json:"nextPageToken,omitempty"`
}

type childrenResponse struct {
	Page          []EntityHeader `json:"page"`
	NextPageToken string         `json:"nextPageToken"`
}

// Children walks a container's children by name, fetching pages (50 each, a
// server constant) only as the loop consumes them, so breaking early saves
// calls. types are lowercase entity types ("folder", "file", ...); none
// means folders and files. Children the caller cannot read are silently left
// out by Synapse. An error is yielded once, and ends the sequence.
func (c *Client) Children(ctx context.Context, parentID string, types ...string) iter.Seq2[EntityHeader, error] {
	if len(types) == 0 {
		types = []string{"folder", "file"}
	} else {
		types = slices.Clone(types)
	}
	return func(yield func(EntityHeader, error) bool) {
		token := ""
		for {
			var page childrenResponse
			err := c.post(ctx, c.repo, "/entity/children", childrenRequest{
				ParentID: parentID, IncludeTypes: types, SortBy: "NAME", SortDirection: "ASC", NextPageToken: token,
			}, &page)
			if err != nil {
				yield(EntityHeader{}, err)
				return
			}
			for _, h := range page.Page {
				if !yield(h, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			if page.NextPageToken == token {
				yield(EntityHeader{}, fmt.Errorf("synapse: children of %s: server repeated page token %q", parentID, token))
				return
			}
			token = page.NextPageToken
		}
	}
}

// ListChildren collects Children; for directory listings that need them all.
func (c *Client) ListChildren(ctx context.Context, parentID string, types ...string) ([]EntityHeader, error) {
	var all []EntityHeader
	for h, err := range c.Children(ctx, parentID, types...) {
		if err != nil {
			return nil, err
		}
		all = append(all, h)
	}
	return all, nil
}

// LookupChild resolves a name in a container to an id in one call (no
// listing); no such child is IsNotFound.
func (c *Client) LookupChild(ctx context.Context, parentID, name string) (string, error) {
	var resp struct {
		ID string `json:"id"`
	}
	err := c.post(ctx, c.repo, "/entity/child", struct {
		ParentID   string `json:"parentId"`
		EntityName string `json:"entityName"`
	}{parentID, name}, &resp)
	if err != nil {
		return "", err
	}
	if resp.ID == "" {
		return "", fmt.Errorf("synapse: POST /entity/child: no id for %q in %s", name, parentID)
	}
	return resp.ID, nil
}

// EntityPath returns the headers from the root down to id itself.
func (c *Client) EntityPath(ctx context.Context, id string) ([]EntityHeader, error) {
	var resp struct {
		Path []EntityHeader `json:"path"`
	}
	if err := c.get(ctx, c.repo, entityPath(id)+"/path", &resp); err != nil {
		return nil, err
	}
	return resp.Path, nil
}

// CreateEntity creates e (name, parentId, concreteType; a file also its
// dataFileHandleId). A duplicate name is IsConflict, except when a retried
// attempt sees the 409 after an earlier attempt may have succeeded: then the
// existing child is returned if it is of the same kind (and, for a file,
// carries the same file handle), so a flaky network never creates twice or
// fails a create that happened.
func (c *Client) CreateEntity(ctx context.Context, e *Entity) (*Entity, error) {
	var created Entity
	oc, err := c.do(ctx, &request{method: http.MethodPost, base: c.repo, path: "/entity", in: e, out: &created})
	if err == nil {
		if oc.empty {
			return nil, errors.New("synapse: POST /entity: empty answer")
		}
		return &created, nil
	}
	if !IsConflict(err) || !oc.maybeApplied {
		return nil, err
	}
	id, lerr := c.LookupChild(ctx, e.ParentID, e.Name)
	if lerr != nil {
		return nil, fmt.Errorf("%w (resolving retried create: %w)", err, lerr)
	}
	got, gerr := c.GetEntity(ctx, id)
	if gerr != nil {
		return nil, fmt.Errorf("%w (resolving retried create: %w)", err, gerr)
	}
	if got.ConcreteType != e.ConcreteType || got.DataFileHandleID != e.DataFileHandleID {
		return nil, err // someone else's entity holds the name
	}
	c.log.DebugContext(ctx, "synapse: retried create resolved to existing entity", "id", got.ID, "parentId", e.ParentID)
	return got, nil
}

// CreateFolder creates a Folder under parentID.
func (c *Client) CreateFolder(ctx context.Context, name, parentID string) (*Entity, error) {
	return c.CreateEntity(ctx, NewFolder(name, parentID))
}

// CreateFile creates a FileEntity under parentID for a handle the caller
// created.
func (c *Client) CreateFile(ctx context.Context, name, parentID, fileHandleID string) (*Entity, error) {
	return c.CreateEntity(ctx, NewFile(name, parentID, fileHandleID))
}

// UpdateEntity replaces e (rename, move, new file handle = new version) and
// returns the new state with its new etag. A stale etag is
// IsPreconditionFailed, except when a retried attempt sees the 412 after an
// earlier attempt may have applied the update: if Synapse already holds
// e's name, parent, file handle and description, that state is returned.
func (c *Client) UpdateEntity(ctx context.Context, e *Entity) (*Entity, error) {
	if e.ID == "" {
		return nil, errors.New("synapse: UpdateEntity: entity has no id")
	}
	var updated Entity
	oc, err := c.do(ctx, &request{method: http.MethodPut, base: c.repo, path: entityPath(e.ID), in: e, out: &updated})
	if err == nil {
		if oc.empty {
			return nil, fmt.Errorf("synapse: PUT %s: empty answer", entityPath(e.ID))
		}
		return &updated, nil
	}
	if !IsPreconditionFailed(err) || !oc.maybeApplied {
		return nil, err
	}
	got, gerr := c.GetEntity(ctx, e.ID)
	if gerr != nil {
		return nil, fmt.Errorf("%w (resolving retried update: %w)", err, gerr)
	}
	if got.Name != e.Name || got.ParentID != e.ParentID || got.DataFileHandleID != e.DataFileHandleID ||
		got.Description != e.Description {
		return nil, err
	}
	return got, nil
}

// DeleteEntity moves id to the trash can. A 404 on a retry after an
// attempt that may have landed counts as done.
func (c *Client) DeleteEntity(ctx context.Context, id string) error {
	oc, err := c.do(ctx, &request{method: http.MethodDelete, base: c.repo, path: entityPath(id)})
	if err != nil && IsNotFound(err) && oc.maybeApplied {
		return nil
	}
	return err
}

// RestoreEntity takes an entity out of the trash can, back to its parent
// (PUT /trashcan/restore/{id}).
func (c *Client) RestoreEntity(ctx context.Context, id string) error {
	return c.call(ctx, &request{method: http.MethodPut, base: c.repo, path: "/trashcan/restore/" + url.PathEscape(id)})
}

// entityPath escapes id so a hostile name-turned-id cannot change the route.
func entityPath(id string) string { return "/entity/" + url.PathEscape(id) }

// get and post are the plain calls: an empty success body is an error, as
// none of their callers can do anything with it.
func (c *Client) get(ctx context.Context, base, path string, out any) error {
	return c.call(ctx, &request{method: http.MethodGet, base: base, path: path, out: out})
}

func (c *Client) post(ctx context.Context, base, path string, in, out any) error {
	return c.call(ctx, &request{method: http.MethodPost, base: base, path: path, in: in, out: out})
}

func (c *Client) call(ctx context.Context, r *request) error {
	oc, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if oc.empty && r.out != nil {
		return fmt.Errorf("synapse: %s %s: empty answer", r.method, r.pathQuery())
	}
	return nil
}
