// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// mkdirMode creates dir with exactly mode (no umask).
func mkdirMode(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPrivateDir(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(t *testing.T, base string) string // returns the directory to check
		allowShared bool
		wantErr     []string // substrings of the error; nil: no error
		wantWarn    bool
	}{
		{name: "missing, with missing parents", setup: func(t *testing.T, base string) string {
			return filepath.Join(base, "a", "b", "root")
		}},
		{name: "private", setup: func(t *testing.T, base string) string { return mkdirMode(t, filepath.Join(base, "d"), 0o700) }},
		{name: "private, sticky and setgid bits", setup: func(t *testing.T, base string) string {
			return mkdirMode(t, filepath.Join(base, "d"), 0o700|os.ModeSticky|os.ModeSetgid)
		}},
		{name: "world-readable", setup: func(t *testing.T, base string) string { return mkdirMode(t, filepath.Join(base, "d"), 0o755) },
			wantErr: []string{"mode 0755", "chmod 0700 ", "--allow-shared-dirs", "allow_shared_dirs = true"}},
		{name: "group-searchable", setup: func(t *testing.T, base string) string { return mkdirMode(t, filepath.Join(base, "d"), 0o710) },
			wantErr: []string{"mode 0710", "chmod 0700 "}},
		{name: "other-searchable only", setup: func(t *testing.T, base string) string { return mkdirMode(t, filepath.Join(base, "d"), 0o701) },
			wantErr: []string{"mode 0701"}},
		{name: "world-readable, allowed", setup: func(t *testing.T, base string) string { return mkdirMode(t, filepath.Join(base, "d"), 0o755) },
			allowShared: true, wantWarn: true},
		{name: "a file", setup: func(t *testing.T, base string) string {
			p := filepath.Join(base, "f")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: []string{"not a directory"}},
		{name: "owned by another user", setup: func(t *testing.T, base string) string {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			d := mkdirMode(t, filepath.Join(base, "d"), 0o700)
			if err := os.Chown(d, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return d
		}, wantErr: []string{"owned by uid 65534", "chown 0 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t, t.TempDir())
			log, logs := testutil.NewLogger()
			err := privateDir(dir, whatRoot, tt.allowShared, log)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("privateDir(%s) = %v", dir, err)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("privateDir(%s) = %v, want an error mentioning %q", dir, err, w)
				}
			}
			if warned := len(logs.Find(slog.LevelWarn, "other users can enter a directory of the store (allow_shared_dirs)")) > 0; warned != tt.wantWarn {
				t.Errorf("warned = %v, want %v", warned, tt.wantWarn)
			}
			if tt.wantErr != nil {
				return
			}
			fi, err := os.Stat(dir)
			if err != nil || !fi.IsDir() {
				t.Fatalf("Stat(%s) = %v, %v; want a directory", dir, fi, err)
			}
			if perm := fi.Mode().Perm(); !tt.allowShared && perm != 0o700 {
				t.Errorf("%s has mode %#o, want 0700", dir, perm)
			}
		})
	}
}

// prepareMountpoint creates the parent 0700 first, then the mount point,
// and refuses a parent other users can enter.
func TestPrepareMountpoint(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	base := t.TempDir()
	mnt := filepath.Join(base, "state", "store")
	got, err := prepareMountpoint(mnt, false, log)
	if err != nil || got != mnt {
		t.Fatalf("prepareMountpoint(%s) = %q, %v", mnt, got, err)
	}
	for _, d := range []string{filepath.Dir(mnt), mnt} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("Stat(%s) = %v, %v; want a 0700 directory", d, fi, err)
		}
	}
	shared := mkdirMode(t, filepath.Join(base, "shared"), 0o755)
	if _, err := prepareMountpoint(filepath.Join(shared, "store"), false, log); err == nil ||
		!strings.Contains(err.Error(), "mount point's parent directory "+shared+" is mode 0755") {
		t.Errorf("prepareMountpoint under a 0755 parent = %v, want a refusal naming the parent", err)
	}
	if _, err := os.Stat(filepath.Join(shared, "store")); !os.IsNotExist(err) {
		t.Errorf("the refused mount point was created: %v", err)
	}
	if _, err := prepareMountpoint(filepath.Join(shared, "store"), true, log); err != nil {
		t.Errorf("prepareMountpoint under a 0755 parent, allowed: %v", err)
	}
}

// The daemon refuses to start, before it mounts anything, when --root or
// the mount point's parent is open to others; the flag and the config key
// are the override.
func TestServeRefusesSharedDirs(t *testing.T) {
	base := t.TempDir()
	conf := filepath.Join(base, "config.toml")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	private := mkdirMode(t, filepath.Join(base, "private"), 0o700)
	shared := mkdirMode(t, filepath.Join(base, "shared"), 0o755)
	tests := []struct {
		name, root, mnt, want string
	}{
		{"shared root", shared, filepath.Join(private, "mnt"), "--root " + shared + " is mode 0755"},
		{"shared mount parent", filepath.Join(private, "root"), filepath.Join(shared, "mnt"), "parent directory " + shared},
	}
	// Canceled: were the directories accepted, the store would mount,
	// stop at once and return nil.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(ctx, []string{"--root", tt.root, "--config", conf, tt.mnt}, &stderr, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--allow-shared-dirs") {
				t.Errorf("run = %v, want a refusal mentioning %q and the override", err, tt.want)
			}
		})
	}
}

func TestParseAllowSharedDirs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"/mnt"}, false},
		{[]string{"--allow-shared-dirs", "/mnt"}, true},
	} {
		f, err := parseServeFlags(tt.args, &bytes.Buffer{})
		if err != nil || f.allowSharedDirs != tt.want || f.mountpoint != "/mnt" {
			t.Errorf("parseServeFlags(%q) = %+v, %v; want allowSharedDirs %v", tt.args, f, err, tt.want)
		}
	}
}
