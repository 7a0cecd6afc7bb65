// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io/fs"
	"reflect"
	"slices"
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
		{name: "missing default file gives defaults", check: func(c Config) bool { return reflect.DeepEqual(c, defaultConfig()) }},
		{name: "missing explicit file", explicit: true, wantErr: "read config"},
		{name: "empty file gives defaults", file: " ", check: func(c Config) bool { return reflect.DeepEqual(c, defaultConfig()) }},
		{
			name: "values override defaults",
			file: "log_level = \"debug\"\n[store]\nresolve_timeout = \"15s\"\nmax_toc_size = 1024\n[registry]\nauth_file = \"/a.json\"\n[fuse]\ndebug = true\nread_ahead_kb = 4096\npassthrough = false\n",
			check: func(c Config) bool {
				return c.LogLevel == "debug" && c.Store.ResolveTimeout.Duration == 15*time.Second &&
					c.Store.MaxTOCSize == 1024 && c.Registry.AuthFile == "/a.json" && c.FUSE.Debug &&
					c.FUSE.ReadAheadKB == 4096 && !c.FUSE.Passthrough &&
					c.Store.IdleTimeout == defaultConfig().Store.IdleTimeout
			},
		},
		{name: "unknown key", file: "log_levle = \"debug\"\n", wantErr: "unknown keys"},
		{name: "unknown nested key", file: "[store]\nprefetch_size = 1\n", wantErr: "store.prefetch_size"},
		{name: "unknown cache key", file: "[cache]\nmax = 1\n", wantErr: "cache.max"},
		{
			name: "fetch and cache knobs",
			file: "[store]\nprefetch = false\nprefetch_timeout = \"3s\"\nbackground_fetch = false\nbackground_share = 0.25\n" +
				"background_delay = \"500ms\"\n" +
				"max_parallel_requests = 2\nmulti_range = false\nread_ahead = 0\nmax_fetch_memory = 33554432\nmax_index_memory = 67108864\n[cache]\nmax_size = 1000\nmemory_size = -1\n",
			check: func(c Config) bool {
				s := c.Store
				return !s.Prefetch && s.PrefetchTimeout.Duration == 3*time.Second && !s.BackgroundFetch &&
					s.BackgroundShare == 0.25 && s.BackgroundDelay.Duration == 500*time.Millisecond && s.MaxParallelRequests == 2 && !s.MultiRange && s.ReadAhead == 0 &&
					s.MaxFetchMemory == 32<<20 && storeOptions(c, nil, nil, nil).MaxFetchMemory == 32<<20 &&
					storeOptions(c, nil, nil, nil).MaxIndexMemory == 64<<20 &&
					c.Cache.MaxSize == 1000 && c.Cache.MemorySize == -1
			},
		},
		{
			name: "speculation knobs",
			file: "[store]\nspeculate = false\nstartup_files = [\"etc/hosts\", \"/etc/os-release\"]\n",
			check: func(c Config) bool {
				o := storeOptions(c, nil, nil, nil)
				return !c.Store.Speculate && slices.Equal(c.Store.StartupFiles, []string{"etc/hosts", "/etc/os-release"}) &&
					o.NoSpeculate && slices.Equal(o.StartupFiles, c.Store.StartupFiles)
			},
		},
		{
			name: "no startup files",
			file: "[store]\nstartup_files = []\n",
			check: func(c Config) bool {
				o := storeOptions(c, nil, nil, nil)
				return c.Store.Speculate && o.StartupFiles != nil && len(o.StartupFiles) == 0
			},
		},
		{name: "empty startup file", file: "[store]\nstartup_files = [\"/\"]\n", wantErr: "startup_files"},
		{name: "share above one", file: "[store]\nbackground_share = 1.5\n", wantErr: "background_share"},
		{name: "zero share", file: "[store]\nbackground_share = 0.0\n", wantErr: "background_share"},
		{name: "zero parallel requests", file: "[store]\nmax_parallel_requests = 0\n", wantErr: "max_parallel_requests"},
		{name: "negative background delay", file: "[store]\nbackground_delay = \"-1s\"\n", wantErr: "background_delay"},
		{name: "negative read-ahead", file: "[store]\nread_ahead = -1\n", wantErr: "read_ahead"},
		{name: "fetch memory too small", file: "[store]\nmax_fetch_memory = 1048576\n", wantErr: "max_fetch_memory"},
		{name: "index memory too small", file: "[store]\nmax_index_memory = 1048576\n", wantErr: "max_index_memory"},
		{name: "negative cache size", file: "[cache]\nmax_size = -1\n", wantErr: "cache.max_size"},
		{name: "prefetch longer than resolve", file: "[store]\nresolve_timeout = \"5s\"\n", wantErr: "prefetch_timeout"},
		{name: "zero prefetch timeout", file: "[store]\nprefetch_timeout = \"0s\"\n", wantErr: "prefetch_timeout"},
		{name: "bad duration", file: "[store]\nresolve_timeout = \"soon\"\n", wantErr: "parse config"},
		{name: "negative duration", file: "[store]\nidle_timeout = \"-1s\"\n", wantErr: "store.idle_timeout must be positive"},
		{
			name: "registry timeouts",
			file: "[store]\nfetch_timeout = \"2s\"\nread_timeout = \"5s\"\n",
			check: func(c Config) bool {
				o := storeOptions(c, nil, nil, nil)
				return o.FetchTimeout == 2*time.Second && o.ReadTimeout == 5*time.Second
			},
		},
		{name: "read timeout below fetch timeout", file: "[store]\nread_timeout = \"5s\"\n", wantErr: "read_timeout"},
		{name: "zero read timeout", file: "[store]\nread_timeout = \"0s\"\n", wantErr: "store.read_timeout must be positive"},
		{name: "bad level", file: "log_level = \"loud\"\n", wantErr: "log level"},
		{name: "shared dirs allowed", file: "allow_shared_dirs = true\n", check: func(c Config) bool { return c.AllowSharedDirs }},
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

func TestStoreOptionsFromConfig(t *testing.T) {
	o := storeOptions(defaultConfig(), nil, nil, nil)
	if o.NoPrefetch || o.NoBackgroundFetch || o.SingleRange || o.ReadAhead != 1<<20 ||
		o.PrefetchTimeout != 10*time.Second || o.BackgroundShare != 0.5 || o.MaxParallelRequests != 8 ||
		o.BackgroundDelay != 2*time.Second || o.FetchTimeout != 10*time.Second || o.ReadTimeout != 30*time.Second {
		t.Errorf("storeOptions(defaults) = %+v", o)
	}
	cfg := defaultConfig()
	cfg.Store.BackgroundDelay.Duration = 0
	if o := storeOptions(cfg, nil, nil, nil); o.BackgroundDelay >= 0 {
		t.Errorf("background_delay = 0 gives BackgroundDelay %s, want negative (none)", o.BackgroundDelay)
	}
	if o, lo := storeOptions(defaultConfig(), nil, nil, nil), layerfsOptions(defaultConfig(), nil); o.NoWholeFiles || lo.NoPassthrough {
		t.Errorf("defaults: NoWholeFiles = %v, NoPassthrough = %v; want passthrough on", o.NoWholeFiles, lo.NoPassthrough)
	}
	cfg = defaultConfig()
	cfg.FUSE.Passthrough = false
	if o, lo := storeOptions(cfg, nil, nil, nil), layerfsOptions(cfg, nil); !o.NoWholeFiles || !lo.NoPassthrough {
		t.Errorf("passthrough = false: NoWholeFiles = %v, NoPassthrough = %v; want both set", o.NoWholeFiles, lo.NoPassthrough)
	}
	cfg = defaultConfig()
	cfg.Store.ReadAhead = 0
	if o := storeOptions(cfg, nil, nil, nil); o.ReadAhead >= 0 {
		t.Errorf("read_ahead = 0 gives ReadAhead %d, want negative (none)", o.ReadAhead)
	}
}
