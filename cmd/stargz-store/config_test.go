// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name     string
		file     string // "" means no file
		explicit bool
		check    func(Config) bool
		wantErr  string
	}{
		{name: "missing default file gives defaults", check: func(c Config) bool { return c == defaultConfig() }},
		{name: "missing explicit file", explicit: true, wantErr: "read config"},
		{name: "empty file gives defaults", file: " ", check: func(c Config) bool { return c == defaultConfig() }},
		{
			name: "values override defaults",
			file: "log_level = \"debug\"\n[store]\nresolve_timeout = \"5s\"\nmax_toc_size = 1024\n[registry]\nauth_file = \"/a.json\"\n[fuse]\ndebug = true\n",
			check: func(c Config) bool {
				return c.LogLevel == "debug" && c.Store.ResolveTimeout.Duration == 5*time.Second &&
					c.Store.MaxTOCSize == 1024 && c.Registry.AuthFile == "/a.json" && c.FUSE.Debug &&
					c.Store.IdleTimeout == defaultConfig().Store.IdleTimeout
			},
		},
		{name: "unknown key", file: "log_levle = \"debug\"\n", wantErr: "unknown keys"},
		{name: "unknown nested key", file: "[store]\nprefetch = true\n", wantErr: "store.prefetch"},
		{name: "bad duration", file: "[store]\nresolve_timeout = \"soon\"\n", wantErr: "parse config"},
		{name: "negative duration", file: "[store]\nidle_timeout = \"-1s\"\n", wantErr: "store.idle_timeout must be positive"},
		{name: "bad level", file: "log_level = \"loud\"\n", wantErr: "log level"},
		{name: "zero toc size", file: "[store]\nmax_toc_size = 0\n", wantErr: "max_toc_size"},
		{name: "not toml", file: "[store\n", wantErr: "parse config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			if tt.file != "" {
				fsys["etc/c.toml"] = &fstest.MapFile{Data: []byte(tt.file)}
			}
			got, err := loadConfig(fsys, "/etc/c.toml", tt.explicit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig() error = %v", err)
			}
			if !tt.check(got) {
				t.Fatalf("loadConfig() = %+v", got)
			}
		})
	}
}

func TestLoadConfigMissingExplicitIsNotExist(t *testing.T) {
	_, err := loadConfig(fstest.MapFS{}, "/nope.toml", true)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("loadConfig() error = %v, want fs.ErrNotExist", err)
	}
}
