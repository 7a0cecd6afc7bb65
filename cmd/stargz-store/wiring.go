// SPDX-License-Identifier: Apache-2.0

package main

import (
	"log/slog"

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

func storeOptions(cfg Config, regs *registryauth.Registries, log *slog.Logger) store.Options {
	return store.Options{
		Registries:     regs,
		ResolveTimeout: cfg.Store.ResolveTimeout.Duration,
		RequestTimeout: cfg.Store.FetchTimeout.Duration,
		IdleTimeout:    cfg.Store.IdleTimeout.Duration,
		MaxTOCSize:     cfg.Store.MaxTOCSize,
		Logger:         log,
	}
}

func layerfsOptions(cfg Config, log *slog.Logger) layerfs.Options {
	return layerfs.Options{
		Logger:         log,
		Debug:          cfg.FUSE.Debug,
		ResolveTimeout: cfg.Store.ResolveTimeout.Duration,
	}
}
