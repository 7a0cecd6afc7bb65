// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"time"
)

// Writer-only constants, with the reference library's values
// (github.com/containerd/stargz-snapshotter/estargz). The names the reader
// also needs (TOCTarName, PrefetchLandmark, NoPrefetchLandmark, FooterSize)
// are shared with it.
const (
	// buildLandmarkContents is the one byte of content of both landmarks.
	buildLandmarkContents = 0x0f
	// buildDefaultChunkSize is BuildOptions.ChunkSize when it is 0.
	buildDefaultChunkSize = 4 << 20
)

// buildTOC is the TOC JSON document as the reference writer marshals it.
type buildTOC struct {
	Version int              `json:"version"`
	Entries []*buildTOCEntry `json:"entries"`
}

// buildTOCEntry is one TOC entry. Field order and tags follow the
// reference's TOCEntry, so json.MarshalIndent produces the same bytes for
// the same values.
type buildTOCEntry struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Size        int64             `json:"size,omitempty"`
	ModTime3339 string            `json:"modtime,omitempty"`
	LinkName    string            `json:"linkName,omitempty"`
	Mode        int64             `json:"mode,omitempty"`
	UID         int               `json:"uid,omitempty"`
	GID         int               `json:"gid,omitempty"`
	Uname       string            `json:"userName,omitempty"`
	Gname       string            `json:"groupName,omitempty"`
	Offset      int64             `json:"offset,omitempty"`
	InnerOffset int64             `json:"innerOffset,omitempty"`
	DevMajor    int               `json:"devMajor,omitempty"`
	DevMinor    int               `json:"devMinor,omitempty"`
	Xattrs      map[string][]byte `json:"xattrs,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	ChunkOffset int64             `json:"chunkOffset,omitempty"`
	ChunkSize   int64             `json:"chunkSize,omitempty"`
	ChunkDigest string            `json:"chunkDigest,omitempty"`
}

// buildModTime formats a tar mtime as the reference does: RFC 3339 in UTC,
// rounded to the second, and empty for the zero time or the Unix epoch.
func buildModTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.UTC().Round(time.Second).Format(time.RFC3339)
}
