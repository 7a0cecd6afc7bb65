// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"io"
	"log/slog"
	"os"

	"go.podman.io/image/v5/types"
)

// defaultParallelism is the number of layers converted at once when Options.Parallelism is 0.
const defaultParallelism = 2

// Options configures [Image]. The zero value is usable: host defaults for registries and
// credentials, TLS verified, 4 MiB chunks, two layers at a time, no logging, no progress output.
type Options struct {
	// SystemContext configures registry access (credentials, certificates, registries.conf,
	// platform choice). nil means the containers/image defaults. Image never modifies it.
	SystemContext *types.SystemContext
	// PlainHTTP allows plain HTTP (and unverified TLS) to both the source and the destination
	// registry, by setting DockerInsecureSkipTLSVerify on a copy of SystemContext.
	PlainHTTP bool
	// ChunkSize is the eStargz chunk size; 0 means the store/estargz default (4 MiB).
	ChunkSize int
	// MinChunkSize > 0 packs small files into shared gzip members; 0 disables packing.
	MinChunkSize int
	// PrioritizedFiles are placed first in every layer that contains them, followed by the
	// prefetch landmark. Empty means no prefetch (the no-prefetch landmark).
	PrioritizedFiles []string
	// Logger receives progress at Debug and Info; nil discards.
	Logger *slog.Logger
	// Parallelism is the number of layers converted concurrently; 0 means 2.
	Parallelism int
	// TempDir holds the temporary files (one decompressed tar and one eStargz blob per layer in
	// flight); "" means os.TempDir().
	TempDir string
	// Progress, if not nil, receives one human-readable line per finished step. Writes are
	// serialised, so any io.Writer will do.
	Progress io.Writer
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Parallelism <= 0 {
		o.Parallelism = defaultParallelism
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	return o
}

// systemContext returns the SystemContext to use: a copy of o.SystemContext with PlainHTTP applied.
// containers/image falls back from https to http only when TLS verification is off.
func (o Options) systemContext() *types.SystemContext {
	var sys types.SystemContext
	if o.SystemContext != nil {
		sys = *o.SystemContext
	}
	if o.PlainHTTP {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return &sys
}
