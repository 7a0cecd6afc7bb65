// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"fmt"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// This file holds the image side of `stargz-store optimize`: the list of
// prioritized files built from a recorded workload. The processes that
// record it (the scratch registry and the Podman sandbox) are package
// convert/optimize; the recording store needs the FUSE tree and is wired
// in cmd/stargz-store.

// landmarkNames are the eStargz landmark files; a recorded workload never
// sees them (the FUSE tree hides them), but a list given by hand might
// name them, and estargz.Build places them itself.
var landmarkNames = map[string]bool{".prefetch.landmark": true, ".no.prefetch.landmark": true}

// AccessedFile is a regular file a workload opened or read, in one layer
// of the image it ran.
type AccessedFile struct {
	// Layer is the digest of the layer the file was read from.
	Layer digest.Digest
	// Path is the file's name in the layer, relative to its root.
	Path string
	// Size is the file's size in bytes.
	Size int64
}

// Prioritized is the result of [PrioritizeFiles].
type Prioritized struct {
	// Files are the accessed files in first-access order, each name once
	// and cleaned, without landmarks or files of unknown layers.
	Files []AccessedFile
	// Names are the cleaned names of Files, for Options.PrioritizedFiles.
	Names []string
	// TotalSize is the sum of the sizes of Files.
	TotalSize int64
	// PerLayer counts Files by the index of their layer in the layers
	// given to PrioritizeFiles.
	PerLayer []LayerFiles
}

// LayerFiles counts the prioritized files of one layer.
type LayerFiles struct {
	Layer digest.Digest
	Files int
	Size  int64
}

// PrioritizeFiles turns the files a workload accessed, in first-access
// order, into the list Options.PrioritizedFiles wants. layers are the
// blob digests of the image the workload ran, bottom first; files of
// other layers are dropped (layers of another image cannot be mapped to
// the converted one). A name accessed in several layers is listed once,
// at its first access: PrioritizedFiles is one list for the whole image,
// and the converter gives each layer the names it contains.
func PrioritizeFiles(files []AccessedFile, layers []digest.Digest) Prioritized {
	p := Prioritized{PerLayer: make([]LayerFiles, len(layers))}
	pos := make(map[digest.Digest]int, len(layers))
	for i, d := range layers {
		pos[d] = i
		p.PerLayer[i].Layer = d
	}
	seen := map[string]bool{}
	for _, f := range files {
		i, ok := pos[f.Layer]
		name := cleanName(f.Path)
		if !ok || name == "" || seen[name] || landmarkNames[name] {
			continue
		}
		seen[name] = true
		f.Path = name
		p.Files = append(p.Files, f)
		p.Names = append(p.Names, name)
		p.TotalSize += f.Size
		p.PerLayer[i].Files++
		p.PerLayer[i].Size += f.Size
	}
	return p
}

// Report writes the prioritized files, one per line as "SIZE /PATH", then
// a line per layer (by position; the digest is the recorded image's, which
// differs from SRC's and DST's) and a total.
func (p Prioritized) Report(w io.Writer) error {
	var b strings.Builder
	for _, f := range p.Files {
		fmt.Fprintf(&b, "%10d /%s\n", f.Size, f.Path)
	}
	for i, l := range p.PerLayer {
		fmt.Fprintf(&b, "layer %d/%d: %d files, %d bytes prioritized (recorded as %s)\n", i+1, len(p.PerLayer), l.Files, l.Size, l.Layer)
	}
	fmt.Fprintf(&b, "prioritized %d files, %d bytes (%s)\n", len(p.Files), p.TotalSize, humanBytes(p.TotalSize))
	_, err := io.WriteString(w, b.String())
	return err
}

// humanBytes formats n as B, KiB, MiB or GiB with one decimal.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 2 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMG"[i])
}
