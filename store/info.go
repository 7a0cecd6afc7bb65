// SPDX-License-Identifier: Apache-2.0

package store

import (
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
)

// layerInfo is the `info` file: the fields of containers/storage's Layer
// that an additional layer store may set (als-protocol §3.4).
type layerInfo struct {
	CompressedDigest   digest.Digest     `json:"compressed-diff-digest,omitempty"`
	CompressedSize     int64             `json:"compressed-size,omitempty"`
	UncompressedDigest digest.Digest     `json:"diff-digest,omitempty"`
	UncompressedSize   int64             `json:"diff-size"`
	Compression        int               `json:"compression"`
	TOCDigest          digest.Digest     `json:"toc-digest,omitempty"`
	Flags              map[string]string `json:"flags,omitempty"`
}

// Info returns the JSON for the layer's `info` file as seen under the
// directory name storage used. Gen A (Podman <= 5.0) names the layer by
// blob digest and needs the DiffID and sizes to compute the layer ID and to
// push; Gen B (Podman >= 5.1) names it by TOC digest and needs toc-digest
// to match, with the DiffID as an unverified flag. Gen B leaves diff-digest
// and compressed-diff-digest out: the store has not verified the DiffID,
// and storage must not index an unverified one.
func (l *Layer) Info(name digest.Digest) ([]byte, error) {
	d := l.desc
	info := layerInfo{Compression: l.fmt.compression, CompressedSize: d.Size, UncompressedSize: d.UncompressedSize}
	if info.UncompressedSize < 0 && l.fmt.uncompressedSize > 0 {
		info.UncompressedSize = l.fmt.uncompressedSize // zstd:chunked: from the tar-split
	}
	switch name {
	case d.Digest:
		info.CompressedDigest = d.Digest
		info.UncompressedDigest = d.DiffID
	case d.TOCDigest:
		info.TOCDigest = d.TOCDigest
		info.Flags = map[string]string{"expected-layer-diffid": d.DiffID.String()}
	default:
		return nil, fmt.Errorf("info for %s: layer is %s (toc %s): %w", name, d.Digest, d.TOCDigest, ErrNotFound)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
