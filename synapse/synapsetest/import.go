package synapsetest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ExternalBucket is the bucket that imports into external storage use, as
// if a lab had its own AWS account.
const ExternalBucket = "synfs-lab-bucket"

// Imported says where an import landed.
type Imported struct {
	ProjectID         string
	FolderID          string // the STS folder; the import's root
	StorageLocationID int64
	Bucket            string
	BaseKey           string
	// IDs maps each imported path, slash-separated and relative to the
	// directory ("a/b.txt"), to its entity id.
	IDs map[string]string
}

// Import makes a new folder named name, with an STS storage location, in
// the owner's project and fills it with dir's contents, recursively: files
// become FileEntities whose bytes are S3 objects, directories Folders.
// external chooses an external bucket (read-write STS) over Synapse storage
// (read-only STS). Names Synapse cannot hold are an error.
func (s *Server) Import(ctx context.Context, name, dir string, external bool) (*Imported, error) {
	st := s.st
	st.mu.Lock()
	folder, loc, err := s.newSTSFolder(name, external)
	st.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("synapsetest: import %s: %w", name, err)
	}
	imp := &Imported{
		ProjectID: synID(folder.parent), FolderID: synID(folder.id), StorageLocationID: loc.id,
		Bucket: loc.bucket, BaseKey: loc.baseKey, IDs: map[string]string{},
	}
	parents := map[string]int64{".": folder.id}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		parent := parents[path.Dir(rel)]
		var id int64
		switch {
		case d.IsDir():
			id, err = s.importFolder(parent, d.Name())
			parents[rel] = id
		case d.Type().IsRegular():
			id, err = s.importFile(ctx, parent, loc, p, d.Name())
		default:
			return nil // symlinks and devices have no Synapse counterpart
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		imp.IDs[rel] = synID(id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("synapsetest: import %s from %s: %w", name, dir, err)
	}
	return imp, nil
}

// newSTSFolder does what a data owner does by hand: a folder in their
// project, a storage location (and for external storage a bucket with
// owner.txt), and the project setting that binds them.
func (s *Server) newSTSFolder(name string, external bool) (*entity, *storageLocation, error) {
	st, uid := s.st, s.Owner.ID
	if s.project == 0 {
		p, aerr := st.createEntity(uid, entityJSON{Name: "synfs emulator project", ConcreteType: typeProject})
		if aerr != nil {
			return nil, nil, aerr
		}
		s.project = p.id
	}
	f, aerr := st.createEntity(uid, entityJSON{Name: name, ParentID: synID(s.project), ConcreteType: typeFolder})
	if aerr != nil {
		return nil, nil, aerr
	}
	in := locationJSON{ConcreteType: typeS3Location, StsEnabled: true}
	if external {
		baseKey := "synfs/" + sanitizeKey(name) + "-" + newUUID()[:8]
		if err := s.s3.CreateBucket(ExternalBucket); err != nil {
			return nil, nil, err
		}
		owner := s.Owner.UserName + "\n"
		if err := s.s3.PutObject(context.Background(), ExternalBucket, baseKey+"/owner.txt", strings.NewReader(owner), int64(len(owner))); err != nil {
			return nil, nil, err
		}
		in = locationJSON{ConcreteType: typeExtLocation, StsEnabled: true, Bucket: ExternalBucket, BaseKey: baseKey}
	}
	loc, aerr := st.createLocation(uid, in, s.objectText)
	if aerr != nil {
		return nil, nil, aerr
	}
	if _, aerr := st.createSetting(uid, settingJSON{ConcreteType: typeUploadList, ProjectID: synID(f.id), SettingsType: "upload", Locations: []int64{loc.id}}); aerr != nil {
		return nil, nil, aerr
	}
	return f, loc, nil
}

func sanitizeKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, name)
}

func (s *Server) importFolder(parent int64, name string) (int64, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	e, aerr := s.st.createEntity(s.Owner.ID, entityJSON{Name: name, ParentID: synID(parent), ConcreteType: typeFolder})
	if aerr != nil {
		return 0, aerr
	}
	return e.id, nil
}

// importFile uploads the bytes where Synapse's own clients put them
// (<baseKey>/<uuid>/<name>) and registers the handle and the entity.
// previewable are the kinds of file Synapse makes a text preview of.
var previewable = map[string]bool{".csv": true, ".tsv": true, ".txt": true}

// addPreview stores a small preview object and handle beside a data
// handle, so that clients meet the preview in handle lists as they do in
// the real service. Called with the state locked.
func (s *Server) addPreview(ctx context.Context, data *fileHandle, localPath string) error {
	f, err := os.Open(localPath)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 1024)
	n, _ := io.ReadFull(f, head)
	key := data.key[:strings.LastIndex(data.key, "/")] + "/preview.txt"
	if err := s.s3.PutObject(ctx, data.bucket, key, strings.NewReader(string(head[:n])), int64(n)); err != nil {
		return err
	}
	sum := md5.Sum(head[:n])
	p := &fileHandle{
		id: s.st.newID(), bucket: data.bucket, key: key, size: int64(n), md5: hex.EncodeToString(sum[:]),
		contentType: "text/plain", fileName: "preview.txt", location: data.location, createdBy: data.createdBy,
		createdOn: data.createdOn, etag: newUUID(), isPreview: true,
	}
	s.st.handles[p.id] = p
	data.preview = p.id
	return nil
}

func (s *Server) importFile(ctx context.Context, parent int64, loc *storageLocation, localPath, name string) (int64, error) {
	f, err := os.Open(localPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := md5.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	key := loc.baseKey + "/" + newUUID() + "/" + name
	if err := s.s3.PutObject(ctx, loc.bucket, key, f, size); err != nil {
		return 0, err
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	fh := &fileHandle{
		id: s.st.newID(), bucket: loc.bucket, key: key, size: size, md5: hex.EncodeToString(h.Sum(nil)),
		contentType: ctype, fileName: name, location: loc.id, createdBy: s.Owner.ID, createdOn: s.st.now(), etag: newUUID(),
	}
	s.st.handles[fh.id] = fh
	if previewable[path.Ext(name)] {
		if err := s.addPreview(ctx, fh, localPath); err != nil {
			return 0, err
		}
	}
	e, aerr := s.st.createEntity(s.Owner.ID, entityJSON{Name: name, ParentID: synID(parent), ConcreteType: typeFile, DataFileHandleID: uidText(fh.id)})
	if aerr != nil {
		return 0, aerr
	}
	return e.id, nil
}
