// Package fs is the FUSE tree of a mounted Synapse folder: directories and
// files backed by Synapse metadata and S3 bytes, and the one place where
// errors become errno values.
//
// Node types follow go-fuse's own examples (zipfs, loopback): dirNode lists
// a Synapse folder lazily, fileNode reads through the block cache.
package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/singleflight"

	"github.com/synfs/synfs/cache"
	"github.com/synfs/synfs/fs/metalog"
	"github.com/synfs/synfs/fs/spool"
	"github.com/synfs/synfs/s3io"
	"github.com/synfs/synfs/synapse"
)

// Options describe what to mount and how it looks to users.
type Options struct {
	Client   *synapse.Client
	FolderID string // "syn123"

	// S3Endpoint overrides the endpoint the storage location names (AWS for
	// Synapse storage). Tests and the demo point it at the emulator.
	S3Endpoint string
	// ReadOnly asks for a read-only mount even where writes would be possible.
	ReadOnly bool
	// SpoolDir holds bytes being written until Synapse has them; default
	// <user cache dir>/synfs/spool.
	SpoolDir string
	// RetryEvery is how often a read-write mount retries uploads that
	// failed (its own, or a killed mount's); default a minute.
	RetryEvery time.Duration

	// Owner is shown as every node's uid and gid; nil means the mounting user.
	Owner             *Owner
	FileMode, DirMode uint32 // permission bits; default 0444 and 0555 on a read-only mount
	// MetadataTTL is how long a listing or an attribute is trusted before
	// Synapse is asked again; also the kernel's entry and attribute timeout.
	MetadataTTL time.Duration
	// MaxMemory bounds the memory cache and every prefetch window together.
	MaxMemory int64
	// CacheDir keeps read bytes on disk across mounts, content-addressed by
	// file handle, at most CacheSize bytes, and the file metadata resolved
	// (package fs/metalog); "" keeps both in memory only.
	CacheDir  string
	CacheSize int64

	HTTPClient *http.Client // for S3; nil = s3io's tuned default
	Logger     *slog.Logger
}

// Owner is a uid and gid.
type Owner struct{ UID, GID uint32 }

const (
	defaultTTL       = time.Minute
	defaultMaxMemory = 512 << 20
	blockSize        = 1 << 20
)

// Filesystem is a Synapse folder resolved and checked, ready to mount.
type Filesystem struct {
	opts     Options
	client   *synapse.Client
	store    *s3io.Store
	blocks   *cache.Cache
	log      *slog.Logger
	root     *dirNode
	readOnly bool
	// whyReadOnly says, for the mount's one log line, why writes are off.
	whyReadOnly string

	// handles deduplicates concurrent resolutions of one file's metadata
	// (a lookup racing the prefetch after a listing).
	handles singleflight.Group
	// prefetch bounds background metadata calls; the Synapse client's
	// limiter bounds them again globally.
	prefetch chan struct{}
	// ahead bounds small files fetched ahead of a reader walking a folder.
	ahead chan struct{}

	metaMu  sync.Mutex
	metas   map[string]fileMeta  // by entity id
	pins    map[string]*s3io.Pin // by file handle id
	metaLog *metalog.Log         // nil without a cache directory

	// Writes (external read-write STS folders only).
	dest    *synapse.UploadDestination
	spool   *spool.Spool
	tempIno atomic.Uint64 // inode numbers of files created but not yet uploaded

	failedMu sync.Mutex
	failed   map[*fileNode]struct{} // closed with bytes not yet in Synapse
}

// tempInoBase starts the inode numbers of new files above any Synapse id.
const tempInoBase = 1 << 62

// SetupError is a reason the folder cannot be mounted, worded for the one
// line the command prints.
type SetupError struct {
	msg string
	err error
}

func (e *SetupError) Error() string { return e.msg }
func (e *SetupError) Unwrap() error { return e.err }

func setupErr(err error, format string, args ...any) error {
	return &SetupError{msg: fmt.Sprintf(format, args...), err: err}
}

// Open resolves and checks the folder the way the mount will use it: the
// token, the entity, its STS storage location and the right to download.
// Every refusal is a *SetupError with a message for the user.
func Open(ctx context.Context, opts Options) (*Filesystem, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MetadataTTL <= 0 {
		opts.MetadataTTL = defaultTTL
	}
	if opts.MaxMemory <= 0 {
		opts.MaxMemory = defaultMaxMemory
	}
	if opts.Owner == nil {
		opts.Owner = &Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	}
	c := opts.Client
	id := opts.FolderID
	if _, ok := inodeOf(id); !ok {
		return nil, setupErr(nil, "%q is not a Synapse id: want syn followed by digits, e.g. syn12345", id)
	}

	me, err := c.UserProfile(ctx)
	switch {
	case synapse.IsUnauthorized(err):
		return nil, setupErr(err, "Synapse rejected the token (401): create a new personal access token with view, download and modify scopes")
	case err != nil:
		return nil, setupErr(err, "cannot reach Synapse: %v", err)
	case me.IsAnonymous():
		return nil, setupErr(nil, "no Synapse token: pass --token, set SYNAPSE_AUTH_TOKEN, or put authtoken in ~/.synapseConfig")
	}

	ent, err := c.GetEntity(ctx, id)
	switch {
	case synapse.IsNotFound(err):
		return nil, setupErr(err, "%s does not exist or is in the trash can", id)
	case synapse.IsForbidden(err):
		return nil, setupErr(err, "%s is not visible to %s: ask its owner to share it with you", id, me.UserName)
	case err != nil:
		return nil, setupErr(err, "reading %s: %v", id, err)
	case ent.IsProject():
		return nil, setupErr(nil, "%s (%q) is a Project: synfs mounts a Folder with an STS storage location", id, ent.Name)
	case !ent.IsFolder():
		return nil, setupErr(nil, "%s (%q) is not a Folder (%s): synfs mounts a Folder with an STS storage location", id, ent.Name, shortType(ent.ConcreteType))
	}

	dest, err := c.UploadDestination(ctx, id)
	if err != nil {
		return nil, setupErr(err, "reading the storage location of %s: %v", id, err)
	}
	if !dest.StsEnabled {
		return nil, setupErr(nil, "%s (%q) has no STS-enabled storage location: synfs reads S3 directly and needs one (see Synapse's 'Compute Directly on Data' guide)", id, ent.Name)
	}

	endpoint := opts.S3Endpoint
	if endpoint == "" && dest.IsExternal() && dest.EndpointURL != "" && dest.EndpointURL != "https://s3.amazonaws.com" {
		endpoint = dest.EndpointURL
	}
	s3opts := s3io.Options{
		Vendor:     stsVendor{client: c, entityID: id},
		Endpoint:   endpoint,
		HTTPClient: opts.HTTPClient,
		Logger:     opts.Logger,
	}
	whyReadOnly := ""
	var store *s3io.Store
	switch {
	case opts.ReadOnly:
		whyReadOnly = "--read-only was given"
	case !dest.IsExternal():
		whyReadOnly = "the folder is in Synapse storage, where STS allows reading only"
	default:
		// Writes need read_write credentials: UPDATE, CREATE and DELETE on
		// the folder besides DOWNLOAD.
		s3opts.Write = true
		store, err = s3io.New(ctx, s3opts)
		if synapse.IsForbidden(err) {
			whyReadOnly = "Synapse refuses read_write credentials: you lack UPDATE, CREATE or DELETE on " + id
			s3opts.Write = false
		} else if err != nil {
			return nil, setupErr(err, "%s: getting read_write STS credentials: %v", id, err)
		}
	}
	if store == nil {
		store, err = s3io.New(ctx, s3opts)
	}
	switch {
	case synapse.IsForbidden(err):
		return nil, setupErr(err, "%s: you may not download its files (no DOWNLOAD permission), so STS credentials are refused", id)
	case synapse.IsBadRequest(err):
		return nil, setupErr(err, "%s: Synapse refused STS credentials: %v", id, err)
	case err != nil:
		return nil, setupErr(err, "%s: getting STS credentials: %v", id, err)
	}

	blocks, err := cache.New(cache.Options{MaxBytes: opts.MaxMemory, Dir: opts.CacheDir, DiskBytes: opts.CacheSize})
	if err != nil {
		return nil, setupErr(err, "cache directory %s: %v", opts.CacheDir, err)
	}
	f := &Filesystem{
		opts:     opts,
		client:   c,
		store:    store,
		blocks:   blocks,
		log:      opts.Logger.With("folder", id),
		prefetch: make(chan struct{}, 8),
		ahead:    make(chan struct{}, smallFilesAhead),
		metas:    map[string]fileMeta{},
		pins:     map[string]*s3io.Pin{},
		failed:   map[*fileNode]struct{}{},
		readOnly: whyReadOnly != "",
		dest:     dest,
	}
	f.whyReadOnly = whyReadOnly
	f.tempIno.Store(tempInoBase)
	if !f.readOnly {
		dir := opts.SpoolDir
		if dir == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				return nil, setupErr(err, "no --spool-dir and no user cache directory: %v", err)
			}
			dir = filepath.Join(cache, "synfs", "spool")
		}
		if f.spool, err = spool.Open(dir); err != nil {
			return nil, setupErr(err, "spool directory %s: %v", dir, err)
		}
	}
	if opts.CacheDir != "" {
		var known map[string]metalog.Entry
		f.metaLog, known = metalog.Open(filepath.Join(opts.CacheDir, "metadata"), id, f.log)
		for id, e := range known {
			f.metas[id] = metaOf(e)
		}
	}
	f.root = newDirNode(f, id, ent.Name, ent.ModifiedOn)
	return f, nil
}

// retryUploads finishes, at the start and then every RetryEvery until
// unmounted, what is left in the spool: an earlier mount's uploads and this
// one's failed ones.
func (f *Filesystem) retryUploads(server *fuse.Server) {
	unmounted := make(chan struct{})
	go func() { server.Wait(); close(unmounted) }()
	every := f.opts.RetryEvery
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		f.retryFailed(ctx)
		if _, err := f.Recover(ctx); err != nil {
			f.log.Error("reading the spool", "err", err)
		}
		cancel()
		select {
		case <-unmounted:
			return
		case <-tick.C:
		}
	}
}

// Close finishes what the caches owe the disk (range metadata, pending
// writes), so that the next mount finds every byte read by this one.
// It also lets go of the uploads it could not finish, so that the next
// mount or synfs recover can claim them.
func (f *Filesystem) Close(ctx context.Context) error {
	f.failedMu.Lock()
	nodes := slices.Collect(maps.Keys(f.failed))
	f.failed = map[*fileNode]struct{}{}
	f.failedMu.Unlock()
	for _, n := range nodes {
		n.wmu.Lock()
		if n.staged != nil && n.staged.writers == 0 {
			n.staged.entry.Close()
			n.setStaged(nil)
		}
		n.wmu.Unlock()
	}
	return errors.Join(f.blocks.Flush(ctx), f.metaLog.Close())
}

// notWritableOr is EROFS on a read-only mount and errno otherwise.
func (f *Filesystem) notWritableOr(errno syscall.Errno) syscall.Errno {
	if f.readOnly {
		return syscall.EROFS
	}
	return errno
}

// ReadOnly reports whether the mount refuses changes, and why.
func (f *Filesystem) ReadOnly() (bool, string) { return f.readOnly, f.whyReadOnly }

// RootName is the Synapse name of the mounted folder.
func (f *Filesystem) RootName() string { return f.root.name }

// MountOptions are the FUSE-level choices of one mount.
type MountOptions struct {
	AllowOther bool
	Debug      bool
}

// Mount serves the filesystem at mountpoint until it is unmounted.
func (f *Filesystem) Mount(mountpoint string, mo MountOptions) (*fuse.Server, error) {
	ino, _ := inodeOf(f.opts.FolderID)
	ttl := f.opts.MetadataTTL
	fuseOpts := fuse.MountOptions{
		FsName:      "synapse:" + f.opts.FolderID,
		Name:        "synfs",
		AllowOther:  mo.AllowOther,
		DirectMount: true,
		// Let 1 MiB reads through and keep many in flight: the bytes come
		// from parallel S3 GETs, not from a disk queue.
		MaxWrite:      1 << 20,
		MaxReadAhead:  1 << 20,
		MaxBackground: 64,
		Debug:         mo.Debug,
		// Synapse has no extended attributes to offer.
		DisableXAttrs: true,
		// open(O_TRUNC) arrives as one request instead of an open and a
		// separate truncate.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
	}
	if f.readOnly {
		fuseOpts.Options = append(fuseOpts.Options, "ro")
		fuseOpts.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
	}
	server, err := gofs.Mount(mountpoint, f.root, &gofs.Options{
		MountOptions:    fuseOpts,
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,
		UID:             f.opts.Owner.UID,
		GID:             f.opts.Owner.GID,
		RootStableAttr:  &gofs.StableAttr{Ino: ino, Mode: fuse.S_IFDIR},
	})
	if err != nil {
		return nil, fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	if err := SetReadahead(mountpoint, ReadaheadKB); err != nil {
		f.log.Debug("kernel readahead left at its default", "err", err)
	}
	f.log.Info("mounted", "mountpoint", mountpoint, "read_only", f.readOnly, "why", f.whyReadOnly)
	if !f.readOnly {
		go f.retryUploads(server)
	}
	return server, nil
}

// inodeOf is the numeric part of a Synapse id: stable across mounts and
// nodes, so tools that remember inode numbers keep working.
func inodeOf(synID string) (uint64, bool) {
	rest, ok := strings.CutPrefix(synID, "syn")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil && n > 0
}

func shortType(concrete string) string { return concrete[strings.LastIndex(concrete, ".")+1:] }

// stsVendor adapts the Synapse client to s3io: credentials for the mounted
// folder, which Synapse resolves to its STS storage location.
type stsVendor struct {
	client   *synapse.Client
	entityID string
}

func (v stsVendor) Vend(ctx context.Context, write bool) (s3io.Credentials, error) {
	perm := synapse.ReadOnly
	if write {
		perm = synapse.ReadWrite
	}
	c, err := v.client.StsCredentials(ctx, v.entityID, perm)
	if err != nil {
		return s3io.Credentials{}, err
	}
	return s3io.Credentials{
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
		Expiration: c.Expiration, Bucket: c.Bucket, BaseKey: c.BaseKey,
	}, nil
}

// errno turns an error into what the application sees, at the one place
// where that happens. An EIO is logged with the entity and the cause.
func (f *Filesystem) errno(op, id string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case synapse.IsNotFound(err):
		return syscall.ENOENT
	case synapse.IsForbidden(err), errors.Is(err, s3io.ErrAccessDenied):
		return syscall.EACCES
	case errors.Is(err, s3io.ErrReadOnly):
		return syscall.EROFS
	}
	f.log.Error("I/O error", "op", op, "entity", id, "err", err)
	return syscall.EIO
}
