// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
	// ProgressBars draws a live progress bar per layer on Progress (a terminal) instead of
	// plain lines.
	ProgressBars bool
	// Platform selects one instance of a manifest list or index, as "os/arch[/variant]", and
	// the destination is that single image. "" converts every platform and pushes an index.
	Platform string
	// ExternalTOC stores each converted layer's TOC in a separate "TOC image" tagged
	// "<dst tag>-esgztoc" instead of inside the layer; the layer blob ends in the 46-byte
	// external-TOC footer. The TOC image is pushed before the destination is tagged.
	ExternalTOC bool
	// KeepDiffID keeps every layer's DiffID (uncompressed digest): the converted blob
	// decompresses to exactly the source tar. Only possible with ExternalTOC and without
	// PrioritizedFiles; an embedded eStargz TOC is a tar entry of the layer and changes it.
	KeepDiffID bool
	// Podman is the podman binary used for containers-storage: references; "" means "podman"
	// from $PATH.
	Podman string
	// Format is the layer format written: FormatEStargz ("" too) or FormatZstdChunked. With
	// zstd:chunked every layer is rewritten (none passes through) and the DiffIDs are kept,
	// except that an eStargz source loses its TOC entry and landmarks (see format.go).
	Format string

	// runPodman replaces running podman (tests).
	runPodman podmanRunner
	// tempWriter, if set, wraps every write to a temporary file (tests inject a full disk).
	tempWriter func(*os.File) io.Writer
}

// ErrKeepDiffID is returned when KeepDiffID is asked for where the format cannot keep it.
var ErrKeepDiffID = errors.New("eStargz cannot keep the DiffID with an embedded TOC: the TOC is a tar entry " +
	"(stargz.index.json) inside the layer, so the uncompressed layer always changes; use --external-toc with --keep-diff-id")

// check refuses contradictory options.
func (o Options) check() error {
	if err := o.checkFormat(); err != nil {
		return err
	}
	if o.KeepDiffID && !o.ExternalTOC {
		return ErrKeepDiffID
	}
	if o.KeepDiffID && len(o.PrioritizedFiles) > 0 {
		return errors.New("--keep-diff-id cannot be combined with prioritized files: moving them to the front of a layer changes its uncompressed bytes")
	}
	if o.Platform != "" {
		if _, err := parsePlatform(o.Platform); err != nil {
			return err
		}
	}
	return nil
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
	if o.Podman == "" {
		o.Podman = "podman"
	}
	if o.runPodman == nil {
		o.runPodman = runPodman
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
	if p, err := parsePlatform(o.Platform); err == nil && o.Platform != "" {
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = p.OS, p.Architecture, p.Variant
	}
	return &sys
}

// parsePlatform parses "os/arch[/variant]".
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
