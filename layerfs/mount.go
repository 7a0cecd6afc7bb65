// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store"
)

// Source is what the file system needs from the store. *store.Manager
// implements it. Implementations must be safe for concurrent use: the
// kernel sends requests in parallel.
type Source interface {
	// Layer resolves the layer named d (blob or TOC digest) of ref. It is
	// called on every lookup of diff, info and blob, so it must be cheap
	// once the layer is resolved. It may return a different *store.Layer
	// after the previous one was freed.
	Layer(ctx context.Context, ref refspec.Reference, d digest.Digest) (*store.Layer, error)
	// Use takes one reference on the layer (storage created `use`).
	Use(ref refspec.Reference, d digest.Digest) error
	// Release drops one reference (storage removed the layer directory).
	Release(ref refspec.Reference, d digest.Digest) error
}

// Default cache timeouts and resolve bound (see Options).
const (
	DefaultEntryTimeout   = time.Second
	DefaultDiffTimeout    = time.Hour
	DefaultResolveTimeout = 30 * time.Second
)

// Options configures Mount. The zero value is usable.
type Options struct {
	// Logger receives failed lookups, uses, releases and reads at Debug
	// (the store says at Warn why a layer is not served), except the
	// first failed read of a layer in a minute, which is a Warn (see
	// readfail.go), and, at Debug, go-fuse's diagnostics. nil discards.
	Logger *slog.Logger
	// Debug makes go-fuse log every request and reply at Debug level.
	Debug bool
	// EntryTimeout is how long the kernel caches entries and attributes
	// of the root, reference and layer directories, and which layer a
	// `diff`, `info` or `blob` name stands for. Negative lookups there are
	// never cached. nil means DefaultEntryTimeout.
	EntryTimeout *time.Duration
	// DiffTimeout is how long the kernel caches entries, attributes and
	// negative entries inside diff trees, whose content never changes.
	// nil means DefaultDiffTimeout; 0 falls back to EntryTimeout for
	// positive entries.
	DiffTimeout *time.Duration
	// ResolveTimeout bounds one Source.Layer call (a registry round trip
	// on the first lookup of a layer); past it the lookup fails with EIO
	// and storage pulls the layer normally. 0 means
	// DefaultResolveTimeout.
	ResolveTimeout time.Duration
	// ReadAheadKB is the kernel read-ahead of the mount in KiB; 0 means
	// DefaultReadAheadKB, negative leaves the kernel's default. Setting it
	// needs root; failing to is logged, not fatal.
	ReadAheadKB int
	// Recorder, if not nil, is told about every lookup, open and read of
	// a regular file in a diff tree, in order (`stargz-store optimize`
	// records a workload this way). nil records nothing.
	Recorder Recorder
	// NoPassthrough turns off opening regular files on their cache file
	// (a single-chunk file, or a big file's whole-file entry) with FUSE
	// passthrough, which lets the kernel read that file without the
	// daemon. Passthrough needs Linux >= 6.9 and CAP_SYS_ADMIN; without
	// them such files are read by the daemon from the cache file.
	NoPassthrough bool

	// noBackingFd opens files on their cache file but never hands it to
	// the kernel: tests of the daemon fallback.
	noBackingFd bool
	// allowOther mounts with allow_other, so that the kernel lets every
	// user's requests through to callerGate: tests of the gate.
	allowOther bool
}

// Server is a mounted file system. Its methods are safe for concurrent
// use.
type Server struct {
	srv *fuse.Server
	dir string
	log *slog.Logger

	// mu guards the field below.
	mu      sync.Mutex
	mounted bool
}

// Mount mounts the ALS tree on dir, which must be an existing directory,
// and serves it until Unmount. Only root and the user the server runs as
// may use the mount (see caller.go): it has no allow_other, which
// overlayfs does not need, since it reaches its lower layers with the
// credentials of whoever mounted the overlay. It has no
// default_permissions (use and release must reach the server), suid
// (images carry setuid binaries) and is not read-only (the kernel would
// refuse use and release). As root it calls mount(2) directly, otherwise
// fusermount3. On error nothing stays mounted. ctx only bounds the
// mounting itself.
func Mount(ctx context.Context, dir string, src Source, opts Options) (*Server, error) {
	if err := checkMountDir(ctx, dir); err != nil {
		return nil, err
	}
	f := newFsys(src, opts)
	fopts := fuseOptions(f, opts)
	gate := &callerGate{RawFileSystem: fusefs.NewNodeFS(&rootNode{fs: f}, fopts), owner: uint32(os.Geteuid()), log: f.log}
	srv, err := fuse.NewServer(gate, dir, &fopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("mount %s: wait for the kernel: %w", dir, err)
	}
	if ra := readAheadKB(opts.ReadAheadKB); ra > 0 {
		if err := setReadAhead(dir, ra); err != nil {
			f.log.Warn("set read-ahead", "dir", dir, "kb", ra, "err", err)
		}
	}
	f.log.Debug("mounted", "dir", dir)
	return &Server{srv: srv, dir: dir, log: f.log, mounted: true}, nil
}

func readAheadKB(kb int) int {
	if kb == 0 {
		return DefaultReadAheadKB
	}
	return kb
}

func checkMountDir(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mount %s: not a directory", dir)
	}
	return nil
}

func newFsys(src Source, opts Options) *fsys {
	f := &fsys{
		src:            src,
		log:            opts.Logger,
		alsTTL:         durationOr(opts.EntryTimeout, DefaultEntryTimeout),
		diffTTL:        durationOr(opts.DiffTimeout, DefaultDiffTimeout),
		resolveTimeout: opts.ResolveTimeout,
		rec:            opts.Recorder,
		passthrough:    !opts.NoPassthrough,
		noBackingFd:    opts.noBackingFd,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.reads = newReadFailures(f.log)
	if f.resolveTimeout <= 0 {
		f.resolveTimeout = DefaultResolveTimeout
	}
	return f
}

func durationOr(d *time.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return *d
}

// fuseOptions returns the go-fuse options. NegativeTimeout is the diff
// trees' (see noEntry for how the ALS levels opt out of it).
func fuseOptions(f *fsys, opts Options) *fusefs.Options {
	goLog := slog.NewLogLogger(f.log.Handler(), slog.LevelDebug)
	return &fusefs.Options{
		MountOptions: fuse.MountOptions{
			// Without allow_other the kernel refuses every process
			// whose uids and gids are not the server's before a
			// request is sent (see caller.go for what reaches us).
			AllowOther: opts.allowOther,
			// fusermount spells it as an option; for mount(2) go-fuse
			// turns it into clearing MS_NOSUID.
			Options:     []string{"suid"},
			FsName:      "stargz-store",
			Name:        "stargz-store",
			MaxWrite:    1 << 20,
			DirectMount: true,
			// Neither nosuid nor nodev: a lazily pulled image must behave
			// like a pulled one, whose setuid binaries and device nodes
			// work through overlayfs (which checks the lower's mount
			// flags). MS_MGC_VAL is "no flags": go-fuse reads 0 as its
			// default, MS_NOSUID|MS_NODEV.
			DirectMountFlags:     syscall.MS_MGC_VAL,
			EnableSymlinkCaching: true,
			// Every read result is bytes in memory: go-fuse's splice
			// (tried for any result) only fails, on every 1 MiB read,
			// as its pipe would have to exceed pipe-max-size (1 MiB).
			DisableSplice: true,
			Debug:         opts.Debug,
			Logger:        goLog,
		},
		EntryTimeout:    &f.alsTTL,
		AttrTimeout:     &f.alsTTL,
		NegativeTimeout: &f.diffTTL,
		NullPermissions: true,
		RootStableAttr:  &fusefs.StableAttr{Ino: rootIno},
		Logger:          goLog,
	}
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Unmount unmounts the file system and waits for the request loops to
// end. It is idempotent: after one success later calls return nil. It
// fails, and can be retried, while the mount is busy (for example an
// overlay mount still uses a diff tree).
func (s *Server) Unmount() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mounted {
		return nil
	}
	if err := s.srv.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", s.dir, err)
	}
	s.mounted = false
	s.log.Debug("unmounted", "dir", s.dir)
	return nil
}

// Wait blocks until the file system is unmounted, by Unmount or from
// outside (umount, fusermount3 -u).
func (s *Server) Wait() { s.srv.Wait() }
