// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/stargz-store/stargz-store/store"
)

// defaultConfigPath is read when --config is not given; a missing file
// there is fine, a missing file named by --config is not.
const defaultConfigPath = "/etc/stargz-store/config.toml"

// minFetchMemory is the smallest store.max_fetch_memory: below it the
// pieces fetches are cut into (a sixteenth of it) get too small to fill
// a request's round trip.
const minFetchMemory = 16 << 20

// Config is the TOML configuration file. This is the only type with toml
// tags: packages get typed Options built from it in wiring.go.
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string         `toml:"log_level"`
	Registry RegistryConfig `toml:"registry"`
	Store    StoreConfig    `toml:"store"`
	Cache    CacheConfig    `toml:"cache"`
	FUSE     FUSEConfig     `toml:"fuse"`

	// AllowSharedDirs lets the store start although other users can enter
	// --root or the mount point's parent (statedir.go); as
	// --allow-shared-dirs.
	AllowSharedDirs bool `toml:"allow_shared_dirs"`
}

// CacheConfig sizes the cache of verified chunks and TOCs under
// <root>/cache.
type CacheConfig struct {
	// MaxSize bounds the cache on disk, in bytes; 0 means 10 GiB or 10 %
	// of the filesystem, whichever is less.
	MaxSize int64 `toml:"max_size"`
	// MemorySize bounds the in-memory LRU of hot chunks, in bytes; 0 means
	// 64 MiB, negative turns it off.
	MemorySize int64 `toml:"memory_size"`
}

// RegistryConfig says where registry settings come from; empty means the
// same places Podman looks.
type RegistryConfig struct {
	// AuthFile is an auth.json; empty: REGISTRY_AUTH_FILE, then Podman's
	// and Docker's default locations.
	AuthFile string `toml:"auth_file"`
	// RegistriesConf is a registries.conf; empty: CONTAINERS_REGISTRIES_CONF
	// or /etc/containers/registries.conf.
	RegistriesConf string `toml:"registries_conf"`
	// CertDir overrides the certs.d search for every registry.
	CertDir string `toml:"cert_dir"`
}

// StoreConfig tunes layer resolution and fetching.
type StoreConfig struct {
	// ResolveTimeout bounds resolving an image and opening a layer.
	ResolveTimeout duration `toml:"resolve_timeout"`
	// FetchTimeout bounds how long one attempt of a registry request may
	// go without progress (no answer, or no 64 KiB more of its body).
	FetchTimeout duration `toml:"fetch_timeout"`
	// ReadTimeout bounds how long a file read waits for the registry in
	// all, retries included; then it fails with EIO.
	ReadTimeout duration `toml:"read_timeout"`
	// IdleTimeout frees a layer that was resolved but never used.
	IdleTimeout duration `toml:"idle_timeout"`
	// MaxTOCSize bounds a layer's decompressed table of contents, in bytes.
	MaxTOCSize int64 `toml:"max_toc_size"`
	// Prefetch fetches a layer's prioritized files when it is first
	// looked up.
	Prefetch bool `toml:"prefetch"`
	// PrefetchTimeout bounds how long that lookup waits for the prefetch.
	PrefetchTimeout duration `toml:"prefetch_timeout"`
	// BackgroundFetch fetches the rest of each layer into the cache.
	BackgroundFetch bool `toml:"background_fetch"`
	// BackgroundShare is the fraction of time background fetch of a layer
	// may keep a request running, in (0, 1].
	BackgroundShare float64 `toml:"background_share"`
	// BackgroundDelay is how long a layer must go without a file read
	// fetching before background fetch sends a request; 0 means no wait.
	BackgroundDelay duration `toml:"background_delay"`
	// MaxParallelRequests bounds range requests in flight per registry.
	MaxParallelRequests int `toml:"max_parallel_requests"`
	// MaxFetchMemory bounds the bytes all fetches hold in memory at once
	// (compressed buffers, decoded chunks not yet cached), at least
	// minFetchMemory.
	MaxFetchMemory int64 `toml:"max_fetch_memory"`
	// MaxIndexMemory bounds the memory the open layers' indexes keep
	// together, at least minFetchMemory.
	MaxIndexMemory int64 `toml:"max_index_memory"`
	// MultiRange sends several ranges in one request.
	MultiRange bool `toml:"multi_range"`
	// ReadAhead is how many compressed bytes of a file beyond the chunk
	// being read are fetched with it; 0 turns read-ahead off.
	ReadAhead int64 `toml:"read_ahead"`
	// Speculate fetches, for layers without prioritized files, the
	// start-up files when the layer is looked up and the libraries of an
	// ELF file once its head is read.
	Speculate bool `toml:"speculate"`
	// StartupFiles are those start-up files, paths in the layer.
	StartupFiles []string `toml:"startup_files"`
}

// FUSEConfig tunes the mount.
type FUSEConfig struct {
	// Debug logs every FUSE request at debug level.
	Debug bool `toml:"debug"`
	// ReadAheadKB is the kernel read-ahead of the mount in KiB; 0 means
	// layerfs.DefaultReadAheadKB, negative the kernel's default.
	ReadAheadKB int `toml:"read_ahead_kb"`
	// Passthrough lets the kernel read a big file (1 MiB or more) straight
	// from its cache file with FUSE passthrough (Linux >= 6.9, root),
	// once the file is cached whole.
	Passthrough bool `toml:"passthrough"`
}

// duration is a time.Duration written as "30s" in TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func defaultConfig() Config {
	return Config{
		LogLevel: "info",
		Store: StoreConfig{
			ResolveTimeout: duration{30 * time.Second},
			FetchTimeout:   duration{10 * time.Second},
			ReadTimeout:    duration{30 * time.Second},
			IdleTimeout:    duration{2 * time.Minute},
			MaxTOCSize:     64 << 20,

			Prefetch:            true,
			PrefetchTimeout:     duration{10 * time.Second},
			BackgroundFetch:     true,
			BackgroundShare:     0.5,
			BackgroundDelay:     duration{2 * time.Second},
			MaxParallelRequests: 8,
			MaxFetchMemory:      256 << 20,
			MaxIndexMemory:      512 << 20,
			MultiRange:          true,
			ReadAhead:           1 << 20,
			Speculate:           true,
			StartupFiles:        slices.Clone(store.DefaultStartupFiles),
		},
		FUSE: FUSEConfig{Passthrough: true},
	}
}

// loadConfig reads path over the defaults. Unknown keys are an error: a
// typo must not silently leave a default in place.
func loadConfig(fsys fs.FS, path string, explicit bool) (Config, error) {
	cfg := defaultConfig()
	b, err := fs.ReadFile(fsys, strings.TrimPrefix(path, "/"))
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(b), &cfg)
	if err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return cfg, fmt.Errorf("config %s: unknown keys %q", path, keys)
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	for name, d := range map[string]duration{
		"store.resolve_timeout":  c.Store.ResolveTimeout,
		"store.fetch_timeout":    c.Store.FetchTimeout,
		"store.read_timeout":     c.Store.ReadTimeout,
		"store.idle_timeout":     c.Store.IdleTimeout,
		"store.prefetch_timeout": c.Store.PrefetchTimeout,
	} {
		if d.Duration <= 0 {
			return fmt.Errorf("config: %s must be positive, got %s", name, d.Duration)
		}
	}
	if c.Store.ReadTimeout.Duration < c.Store.FetchTimeout.Duration {
		// A read would give up before a stalled attempt is caught and
		// retried.
		return fmt.Errorf("config: store.read_timeout (%s) must not be less than store.fetch_timeout (%s)",
			c.Store.ReadTimeout.Duration, c.Store.FetchTimeout.Duration)
	}
	if c.Store.MaxTOCSize <= 0 {
		return fmt.Errorf("config: store.max_toc_size must be positive, got %d", c.Store.MaxTOCSize)
	}
	if c.Store.PrefetchTimeout.Duration >= c.Store.ResolveTimeout.Duration {
		// The FUSE lookup that waits for the prefetch is bounded by
		// resolve_timeout: a longer wait would fail it.
		return fmt.Errorf("config: store.prefetch_timeout (%s) must be less than store.resolve_timeout (%s)",
			c.Store.PrefetchTimeout.Duration, c.Store.ResolveTimeout.Duration)
	}
	if s := c.Store.BackgroundShare; !(s > 0 && s <= 1) {
		return fmt.Errorf("config: store.background_share must be in (0, 1], got %v", s)
	}
	if c.Store.BackgroundDelay.Duration < 0 {
		return fmt.Errorf("config: store.background_delay must not be negative, got %s", c.Store.BackgroundDelay.Duration)
	}
	if c.Store.MaxParallelRequests <= 0 {
		return fmt.Errorf("config: store.max_parallel_requests must be positive, got %d", c.Store.MaxParallelRequests)
	}
	if c.Store.MaxFetchMemory < minFetchMemory {
		return fmt.Errorf("config: store.max_fetch_memory must be at least %d (16 MiB), got %d", minFetchMemory, c.Store.MaxFetchMemory)
	}
	if c.Store.MaxIndexMemory < minFetchMemory {
		return fmt.Errorf("config: store.max_index_memory must be at least %d (16 MiB), got %d", minFetchMemory, c.Store.MaxIndexMemory)
	}
	for _, p := range c.Store.StartupFiles {
		if strings.Trim(p, "/") == "" {
			return fmt.Errorf("config: store.startup_files: %q is not a file path", p)
		}
	}
	if c.Store.ReadAhead < 0 {
		return fmt.Errorf("config: store.read_ahead must not be negative, got %d", c.Store.ReadAhead)
	}
	if c.Cache.MaxSize < 0 {
		return fmt.Errorf("config: cache.max_size must not be negative, got %d", c.Cache.MaxSize)
	}
	return nil
}
