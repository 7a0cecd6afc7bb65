// SPDX-License-Identifier: Apache-2.0

package index

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// TOCEntry is one entry of a table of contents as eStargz and
// zstd:chunked both spell it: zstd:chunked's TOC (containers/storage's
// minimal.FileMetadata) extends eStargz's, and these fields mean the same
// in both (the JSON keys are the tags). A format reader decodes its JSON
// into one, handles the entry
// kinds that are its own (hard links, AddHardlink; chunk entries, whose
// fields stay with the format, AddChunk) and hands every other entry to
// Builder.AddTOC: one validation of an entry's metadata for both formats.
type TOCEntry struct {
	Name string `json:"name"`
	// Type is one of ParseType's spellings.
	Type     string `json:"type"`
	LinkName string `json:"linkName"`
	// Mode, DevMajor and DevMinor are read as 64-bit so that a value that
	// does not fit 32 bits is refused, not truncated.
	Mode      int64  `json:"mode"`
	Size      int64  `json:"size"`
	UID       int    `json:"uid"`
	GID       int    `json:"gid"`
	UserName  string `json:"userName"`
	GroupName string `json:"groupName"`
	// ModTime is RFC 3339; "" is the zero time.
	ModTime  string `json:"modtime"`
	DevMajor int64  `json:"devMajor"`
	DevMinor int64  `json:"devMinor"`
	// Xattrs holds the values decoded (DecodeXattr).
	Xattrs map[string][]byte `json:"xattrs"`
	// Digest is a regular file's whole-content digest, if the TOC gives one.
	Digest string `json:"digest"`
}

// AddTOC validates t and adds it (Add), and returns its type. The rules
// are the same for every format, but for Limits.IgnoreOtherSizes:
//
//   - names: as Add (CheckNames first, so that no error quotes a huge
//     name; then Clean);
//   - type: one of ParseType's; hard links and chunk entries are the
//     format's to handle;
//   - mode: 0 to 2^32-1, of which the permission, setuid, setgid and
//     sticky bits are kept;
//   - device numbers: 0 to 2^32-1 each, kept for char and block devices
//     only; a link target is kept for symlinks only;
//   - modtime: RFC 3339, with or without fractional seconds (time.Parse
//     accepts both with either RFC 3339 layout), or empty: the zero time;
//   - size: a regular file's, >= 0; on other types it must be 0, unless
//     Limits.IgnoreOtherSizes, which drops it;
//   - digest: a regular file's, if any, a valid digest of an algorithm Go
//     knows; on other types it is ignored;
//   - owners and xattrs: as Add (the caps of caps.go); an empty xattr map
//     is nil.
func (b *Builder) AddTOC(t *TOCEntry) (Type, error) {
	e, err := b.entryOf(t)
	if err != nil {
		return 0, err
	}
	return e.Type, b.Add(e)
}

// entryOf converts t to an Entry, checking what Add does not.
func (b *Builder) entryOf(t *TOCEntry) (Entry, error) {
	if err := CheckNames(t.Name, t.LinkName); err != nil {
		return Entry{}, err
	}
	typ, ok := ParseType(t.Type)
	if !ok {
		return Entry{}, fmt.Errorf("%w: %q has unknown type %q", ErrInvalid, t.Name, t.Type)
	}
	switch {
	case t.Mode < 0 || t.Mode > 1<<32-1:
		return Entry{}, fmt.Errorf("%w: %q has mode %#o", ErrInvalid, t.Name, t.Mode)
	case t.DevMajor < 0 || t.DevMajor > 1<<32-1 || t.DevMinor < 0 || t.DevMinor > 1<<32-1:
		return Entry{}, fmt.Errorf("%w: %q has device %d,%d", ErrInvalid, t.Name, t.DevMajor, t.DevMinor)
	}
	mt, err := b.modTime(t.ModTime)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %q has modtime %q", ErrInvalid, t.Name, t.ModTime)
	}
	e := Entry{
		Name: t.Name, Type: typ, Mode: uint32(t.Mode),
		UID: t.UID, GID: t.GID, UserName: t.UserName, GroupName: t.GroupName,
		Size: t.Size, ModTime: mt, Xattrs: t.Xattrs,
	}
	if len(e.Xattrs) == 0 {
		e.Xattrs = nil
	}
	switch typ {
	case TypeReg:
		if t.Digest != "" {
			e.Digest = digest.Digest(t.Digest)
			if err := validateDigest(e.Digest); err != nil {
				return Entry{}, fmt.Errorf("%w: %q has digest %q: %v", ErrInvalid, t.Name, t.Digest, err)
			}
		}
	case TypeSymlink:
		e.LinkName = t.LinkName
	case TypeChar, TypeBlock:
		e.DevMajor, e.DevMinor = uint32(t.DevMajor), uint32(t.DevMinor)
	}
	if typ != TypeReg && b.lim.IgnoreOtherSizes {
		e.Size = 0
	}
	return e, nil
}

// modTime parses an RFC 3339 time; entries of one layer mostly share a
// few times, so the last one is remembered.
func (b *Builder) modTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if s == b.lastModTime {
		return b.lastModTimeParsed, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	b.lastModTime, b.lastModTimeParsed = s, t
	return t, nil
}

// CheckChunkName checks that a chunk entry named chunk belongs to the
// regular file named file, the entry it follows: a chunk entry must
// follow a regular file of some content ("" when it follows anything
// else), and its name is the file's (in any spelling Clean makes the
// same), or empty.
func CheckChunkName(chunk, file string) error {
	if file == "" {
		return fmt.Errorf("%w: chunk entry %q follows no regular file", ErrInvalid, chunk)
	}
	if chunk == "" || chunk == file {
		return nil
	}
	a, errA := Clean(chunk)
	b, errB := Clean(file)
	if errA != nil || errB != nil || a != b {
		return fmt.Errorf("%w: chunk entry %q follows file %q", ErrInvalid, chunk, file)
	}
	return nil
}

// DecodeXattr decodes the value of xattr name as both formats' JSON
// spells it: standard base64 with padding (as encoding/json decodes a
// []byte; line breaks are skipped). A name over MaxXattrNameLen, or a
// value that would decode to more than MaxXattrValueLen bytes, is refused
// before anything is decoded.
func DecodeXattr(name, value string) ([]byte, error) {
	if len(name) > MaxXattrNameLen {
		return nil, fmt.Errorf("%w: xattr name of %d bytes, limit %d", ErrInvalid, len(name), MaxXattrNameLen)
	}
	// At least what the value decodes to: 3 bytes per 4 characters but
	// line breaks, less 2 of padding.
	n := len(value) - strings.Count(value, "\n") - strings.Count(value, "\r")
	if n/4*3-2 > MaxXattrValueLen {
		return nil, fmt.Errorf("%w: xattr %q of more than %d bytes", ErrInvalid, name, MaxXattrValueLen)
	}
	v, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("%w: xattr %q is not base64: %v", ErrInvalid, name, err)
	}
	return v, nil
}
