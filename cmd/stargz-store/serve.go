// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/layerfs"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
	"github.com/stargz-store/stargz-store/systemd"
)

// The store is what the FUSE tree serves.
var _ layerfs.Source = (*store.Manager)(nil)

type serveFlags struct {
	root, config, logLevel string
	configSet              bool
	allowSharedDirs        bool
	mountpoint             string
}

func parseServeFlags(args []string, stderr io.Writer) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("stargz-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.root, "root", "/var/lib/stargz-store", "directory for the store's state")
	fs.StringVar(&f.config, "config", defaultConfigPath, "TOML configuration file")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides the config file)")
	fs.BoolVar(&f.allowSharedDirs, "allow-shared-dirs", false,
		"start even if other users can enter --root or the mount point's parent (as allow_shared_dirs in the config file)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stargz-store [flags] MOUNTPOINT\n       stargz-store convert [flags] SRC DST\n       stargz-store version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	fs.Visit(func(fl *flag.Flag) { f.configSet = f.configSet || fl.Name == "config" })
	if fs.NArg() != 1 {
		fs.Usage()
		return f, fmt.Errorf("want exactly one MOUNTPOINT, got %d arguments", fs.NArg())
	}
	f.mountpoint = fs.Arg(0)
	return f, nil
}

// runServe mounts the store and serves until ctx ends (SIGINT, SIGTERM).
// Shutdown order: unmount first (no new requests), then close the store.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(os.DirFS("/"), absPath(f.config), f.configSet)
	if err != nil {
		return err
	}
	if f.logLevel != "" {
		cfg.LogLevel = f.logLevel
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	log := newLogger(stderr, level)
	shared := f.allowSharedDirs || cfg.AllowSharedDirs
	if err := privateDir(f.root, whatRoot, shared, log); err != nil {
		return err
	}
	mnt, err := prepareMountpoint(f.mountpoint, shared, log)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, f.root, mnt, log)
}

// serve runs the store. Shutdown (the defers, in reverse): unmount,
// close the store, close the cache, close the registry configuration.
func serve(ctx context.Context, cfg Config, root, mnt string, log *slog.Logger) error {
	if cfg.FUSE.Passthrough {
		if why := passthroughUnavailable(); why != "" {
			log.Info("FUSE passthrough unavailable: every read goes through the daemon, and no whole-file cache copies are made", "why", why)
			cfg.FUSE.Passthrough = false
		}
	}
	regs, err := registryauth.New(registryOptions(cfg, log))
	if err != nil {
		return fmt.Errorf("registry configuration: %w", err)
	}
	defer regs.Close()
	cache, err := cachedir.Open(cachePath(root), cacheOptions(cfg, log))
	if err != nil {
		return fmt.Errorf("open cache: %w", err)
	}
	defer cache.Close()
	m, err := store.New(storeOptions(cfg, regs, cache, log))
	if err != nil {
		return fmt.Errorf("start store: %w", err)
	}
	defer m.Close()
	srv, err := layerfs.Mount(ctx, mnt, m, layerfsOptions(cfg, log))
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	defer srv.Unmount()
	log.Info("mounted", "path", mnt)
	if _, err := systemd.Ready(); err != nil {
		log.Warn("notify systemd", "err", err)
	}
	<-ctx.Done()
	log.Info("shutting down", "path", mnt)
	systemd.Stopping()
	if err := srv.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// prepareMountpoint checks (or creates) the mountpoint's parent as a
// private directory, creates the mountpoint 0700 and clears a stale mount
// a crashed instance left behind ("transport endpoint is not connected"),
// which would otherwise break every podman command. A live mount is an
// error: another store serves there.
func prepareMountpoint(dir string, allowShared bool, log *slog.Logger) (string, error) {
	dir = absPath(dir)
	if err := privateDir(filepath.Dir(dir), whatMntParent, allowShared, log); err != nil {
		return "", err
	}
	var st unix.Stat_t
	err := unix.Stat(dir, &st)
	if errors.Is(err, unix.ENOTCONN) {
		log.Warn("removing stale mount", "path", dir)
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return "", fmt.Errorf("remove stale mount %s: %w", dir, err)
		}
		err = unix.Stat(dir, &st)
	}
	if errors.Is(err, unix.ENOENT) {
		return dir, os.Mkdir(dir, 0o700)
	}
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if mounted, err := isMountpoint(dir); err != nil {
		return "", err
	} else if mounted {
		return "", fmt.Errorf("mountpoint %s: something is already mounted there", dir)
	}
	return dir, nil
}

// isMountpoint compares the device of dir with that of its parent.
func isMountpoint(dir string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Dir(dir), &pst); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	return st.Dev != pst.Dev || dir == "/", nil
}
