// SPDX-License-Identifier: Apache-2.0

package main

import (
	"log/slog"
	"path/filepath"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/layerfs"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

// The functions below translate the configuration file into each
// package's typed Options: no package below cmd sees TOML or flags.

func registryOptions(cfg Config, log *slog.Logger) registryauth.Options {
	return registryauth.Options{
		AuthFile:       cfg.Registry.AuthFile,
		RegistriesConf: cfg.Registry.RegistriesConf,
		CertDir:        cfg.Registry.CertDir,
		Logger:         log,
	}
}

func storeOptions(cfg Config, regs *registryauth.Registries, cache *cachedir.Dir, log *slog.Logger) store.Options {
	readAhead := cfg.Store.ReadAhead
	if readAhead == 0 {
		readAhead = -1 // store.Options: 0 is the default, negative is none
	}
	backgroundDelay := cfg.Store.BackgroundDelay.Duration
	if backgroundDelay == 0 {
		backgroundDelay = -1 // store.Options: 0 is the default, negative is none
	}
	return store.Options{
		Registries:          regs,
		ResolveTimeout:      cfg.Store.ResolveTimeout.Duration,
		FetchTimeout:        cfg.Store.FetchTimeout.Duration,
		ReadTimeout:         cfg.Store.ReadTimeout.Duration,
		IdleTimeout:         cfg.Store.IdleTimeout.Duration,
		MaxTOCSize:          cfg.Store.MaxTOCSize,
		Logger:              log,
		Cache:               cache,
		NoPrefetch:          !cfg.Store.Prefetch,
		PrefetchTimeout:     cfg.Store.PrefetchTimeout.Duration,
		NoBackgroundFetch:   !cfg.Store.BackgroundFetch,
		BackgroundShare:     cfg.Store.BackgroundShare,
		BackgroundDelay:     backgroundDelay,
		MaxParallelRequests: cfg.Store.MaxParallelRequests,
		MaxFetchMemory:      cfg.Store.MaxFetchMemory,
		MaxIndexMemory:      cfg.Store.MaxIndexMemory,
		SingleRange:         !cfg.Store.MultiRange,
		ReadAhead:           readAhead,
		NoSpeculate:         !cfg.Store.Speculate,
		StartupFiles:        append([]string{}, cfg.Store.StartupFiles...),
		// Whole-file entries exist for passthrough: without it they
		// would only take disk space.
		NoWholeFiles: !cfg.FUSE.Passthrough,
	}
}

// cacheOptions configures the cache under <root>/cache.
func cacheOptions(cfg Config, log *slog.Logger) cachedir.Options {
	return cachedir.Options{MaxSize: cfg.Cache.MaxSize, MemorySize: cfg.Cache.MemorySize, Logger: log}
}

// cachePath is where the cache lives under the store's root.
func cachePath(root string) string { return filepath.Join(root, "cache") }

func layerfsOptions(cfg Config, log *slog.Logger) layerfs.Options {
	return layerfs.Options{
		Logger:         log,
		Debug:          cfg.FUSE.Debug,
		ResolveTimeout: cfg.Store.ResolveTimeout.Duration,
		ReadAheadKB:    cfg.FUSE.ReadAheadKB,
		NoPassthrough:  !cfg.FUSE.Passthrough,
	}
}
