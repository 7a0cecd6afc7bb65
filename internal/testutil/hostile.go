// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/estargz"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// Hostile layers are real blobs whose table of contents is rewritten: the
// payload stays what a writer produced, and the TOC says whatever a test
// wants it to say (sizes, offsets, owners, links, landmarks). The
// rewritten blob is still a valid layer for a runtime that ignores the
// TOC, so that a refused layer can be pulled normally.

// TOC is a decoded table of contents: the document and its entries, which
// an edit may change, reorder or replace. Numbers decode as json.Number,
// so that offsets keep every digit.
type TOC struct {
	Doc     map[string]any
	Entries []map[string]any
}

func decodeTOC(data []byte) (*TOC, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode TOC: %w", err)
	}
	raw, _ := doc["entries"].([]any)
	toc := &TOC{Doc: doc}
	for _, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errors.New("decode TOC: an entry is not an object")
		}
		toc.Entries = append(toc.Entries, m)
	}
	return toc, nil
}

func (t *TOC) encode() ([]byte, error) {
	t.Doc["entries"] = t.Entries
	return json.Marshal(t.Doc)
}

// Find returns the first entry with the given name, however the TOC
// spells it ("a/b", "./a/b", "/a/b"), and type ("" for any).
func (t *TOC) Find(name, typ string) map[string]any {
	for _, e := range t.Entries {
		n, _ := e["name"].(string)
		if cleanName(n) == cleanName(name) && (typ == "" || e["type"] == typ) {
			return e
		}
	}
	return nil
}

func cleanName(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }

// RewriteESGZ replaces the TOC of an eStargz blob (with an embedded TOC)
// by what edit makes of it: a new TOC member and footer follow the
// payload members, which are kept byte for byte. It returns the new blob
// and its TOC digest. The blob's DiffID changes with the TOC, which is a
// file of its tar.
func RewriteESGZ(blob []byte, edit func(*TOC) error) ([]byte, digest.Digest, error) {
	f, err := estargz.ParseFooter(blob[max(0, len(blob)-estargz.FooterSize):])
	if err != nil {
		return nil, "", err
	}
	data, err := esgzTOCJSON(blob[f.TOCOffset : int64(len(blob))-f.Size])
	if err != nil {
		return nil, "", err
	}
	toc, err := decodeTOC(data)
	if err != nil {
		return nil, "", err
	}
	if err := edit(toc); err != nil {
		return nil, "", err
	}
	if data, err = toc.encode(); err != nil {
		return nil, "", err
	}
	member, err := esgzTOCMember(data)
	if err != nil {
		return nil, "", err
	}
	out := append(blob[:f.TOCOffset:f.TOCOffset], member...)
	return estargz.AppendFooter(out, f.TOCOffset), digest.FromBytes(data), nil
}

// esgzTOCJSON returns the stargz.index.json of a TOC member.
func esgzTOCJSON(member []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(member))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("TOC member: %w", err)
	}
	return io.ReadAll(tr)
}

// esgzTOCMember is a gzip member holding a tar of stargz.index.json and
// the tar's end blocks, as the TOC member of a blob.
func esgzTOCMember(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: estargz.TOCTarName, Size: int64(len(data)), Mode: 0o644}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RewriteZstd replaces the TOC of a zstd:chunked blob, located by the
// annotations Build returned, by what edit makes of it: the data frames
// are kept, then come the new TOC, the old tar-split and a new footer. It
// returns the new blob and its annotations (TOC digest, positions). The
// DiffID does not change: the TOC is in skippable frames.
func RewriteZstd(blob []byte, ann map[string]string, edit func(*TOC) error) ([]byte, map[string]string, error) {
	pos, err := zstdchunked.ParsePosition(ann[zstdchunked.ManifestPositionAnnotation])
	if err != nil {
		return nil, nil, err
	}
	ts, err := zstdchunked.ParseTarSplitPosition(ann[zstdchunked.TarSplitPositionAnnotation])
	if err != nil {
		return nil, nil, err
	}
	zr, err := zstd.NewReader(nil)
	if err != nil {
		return nil, nil, err
	}
	defer zr.Close()
	data, err := zr.DecodeAll(blob[pos.Offset:pos.End()], nil)
	if err != nil {
		return nil, nil, fmt.Errorf("decompress TOC: %w", err)
	}
	toc, err := decodeTOC(data)
	if err != nil {
		return nil, nil, err
	}
	if err := edit(toc); err != nil {
		return nil, nil, err
	}
	if data, err = toc.encode(); err != nil {
		return nil, nil, err
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, nil, err
	}
	ctoc := zw.EncodeAll(data, nil)
	_ = zw.Close()
	out := bytes.Clone(blob[:pos.Offset-8]) // the data frames, before the TOC's skippable frame
	newTOC := zstdchunked.Position{Offset: int64(len(out)) + 8, Length: int64(len(ctoc)), UncompressedLength: int64(len(data))}
	out = appendSkippable(out, ctoc)
	newTS := zstdchunked.Position{Offset: int64(len(out)) + 8, Length: ts.Length, UncompressedLength: ts.UncompressedLength}
	out = appendSkippable(out, blob[ts.Offset:ts.End()])
	out = zstdchunked.AppendFooter(out, zstdchunked.Footer{TOC: newTOC, ManifestType: zstdchunked.ManifestTypeCRFS, TarSplit: newTS})
	newAnn := map[string]string{}
	for k, v := range ann {
		newAnn[k] = v
	}
	newAnn[zstdchunked.ManifestChecksumAnnotation] = digest.FromBytes(ctoc).String()
	newAnn[zstdchunked.ManifestPositionAnnotation] = fmt.Sprintf("%d:%d:%d:1", newTOC.Offset, newTOC.Length, newTOC.UncompressedLength)
	newAnn[zstdchunked.TarSplitPositionAnnotation] = fmt.Sprintf("%d:%d:%d", newTS.Offset, newTS.Length, newTS.UncompressedLength)
	return out, newAnn, nil
}

// appendSkippable appends data in a zstd skippable frame (RFC 8878
// 3.1.2).
func appendSkippable(dst, data []byte) []byte {
	dst = append(dst, 0x50, 0x2a, 0x4d, 0x18)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// EmptyLandmarkAt makes the eStargz .prefetch.landmark of toc an empty
// entry at blob offset off: a landmark with content is a chunk, which
// makes a layer refused when it lies beyond the data, while an empty one
// only moves the prefetch end.
func EmptyLandmarkAt(toc *TOC, off int64) error {
	e := toc.Find(estargz.PrefetchLandmark, "reg")
	if e == nil {
		return errors.New("no .prefetch.landmark entry")
	}
	for _, k := range []string{"size", "chunkSize", "chunkDigest", "digest"} {
		delete(e, k)
	}
	e["offset"] = Num(off)
	return nil
}

// Num returns n as a JSON number for a TOC field.
func Num(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }
