// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stargz-store/stargz-store/store/index"
)

// tocDecoder decodes TOC JSON. A TOC of a large layer has hundreds of
// thousands of entries, and encoding/json spends most of Open's time and
// allocations on them; this decoder knows the one schema, allocates
// nothing per string that has no escapes (values are substrings of the
// document), and never recurses without bound.
//
// It accepts a subset of what encoding/json would decode into tocEntry,
// with the same results: the same string unescaping (invalid UTF-8 and
// lone surrogates become U+FFFD), null leaving a field unchanged, the last
// of duplicate keys winning, base64 xattr values decoded by the same
// decoder. It is stricter in three ways, none of which a writer produces:
// keys match only in their exact case, numbers must be integers that fit,
// and the document may hold only one "entries" array.
type tocDecoder struct {
	s   string
	pos int
}

// maxJSONDepth bounds the nesting of values the decoder skips, as
// encoding/json bounds it.
const maxJSONDepth = 10000

func (d *tocDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: decode TOC JSON at byte %d: %s", index.ErrInvalid, d.pos, fmt.Sprintf(format, args...))
}

func (d *tocDecoder) skipSpace() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// consume skips white space and then c, if c is next.
func (d *tocDecoder) consume(c byte) bool {
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

func (d *tocDecoder) expect(c byte) error {
	if !d.consume(c) {
		return d.errorf("want %q", c)
	}
	return nil
}

// null consumes a null literal, if one is next.
func (d *tocDecoder) null() bool {
	d.skipSpace()
	if len(d.s)-d.pos >= 4 && d.s[d.pos:d.pos+4] == "null" {
		d.pos += 4
		return true
	}
	return false
}

// nextKey steps to key number n of an object whose '{' is consumed, and
// past its ':'. It returns ok == false at the closing '}'.
func (d *tocDecoder) nextKey(n int) (key string, ok bool, err error) {
	if d.consume('}') {
		return "", false, nil
	}
	if n > 0 {
		if err := d.expect(','); err != nil {
			return "", false, err
		}
	}
	if key, err = d.str(); err != nil {
		return "", false, err
	}
	return key, true, d.expect(':')
}

// str decodes a string. Without escapes or non-ASCII bytes it is a
// substring of the document.
func (d *tocDecoder) str() (string, error) {
	if !d.consume('"') {
		return "", d.errorf("want a string")
	}
	start := d.pos
	for d.pos < len(d.s) {
		switch c := d.s[d.pos]; {
		case c == '"':
			d.pos++
			return d.s[start : d.pos-1], nil
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(d.s[d.pos:])
			if r == utf8.RuneError && n == 1 {
				return d.slowStr(start)
			}
			d.pos += n
			continue
		case c == '\\' || c < 0x20:
			return d.slowStr(start)
		}
		d.pos++
	}
	return "", d.errorf("unterminated string")
}

// slowStr finishes a string that needs unescaping or UTF-8 checks, the
// way encoding/json does.
func (d *tocDecoder) slowStr(start int) (string, error) {
	b := make([]byte, 0, d.pos-start+16)
	b = append(b, d.s[start:d.pos]...)
	for d.pos < len(d.s) {
		c := d.s[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			var err error
			if b, err = d.escape(b); err != nil {
				return "", err
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, n := utf8.DecodeRuneInString(d.s[d.pos:])
			b = utf8.AppendRune(b, r) // RuneError for invalid bytes, as encoding/json
			d.pos += n
		}
	}
	return "", d.errorf("unterminated string")
}

// escape appends the character of the escape sequence at d.pos.
func (d *tocDecoder) escape(b []byte) ([]byte, error) {
	if d.pos+1 >= len(d.s) {
		return nil, d.errorf("unterminated escape")
	}
	c := d.s[d.pos+1]
	d.pos += 2
	switch c {
	case '"', '\\', '/':
		return append(b, c), nil
	case 'b':
		return append(b, '\b'), nil
	case 'f':
		return append(b, '\f'), nil
	case 'n':
		return append(b, '\n'), nil
	case 'r':
		return append(b, '\r'), nil
	case 't':
		return append(b, '\t'), nil
	case 'u':
		r := hex4(d.s[d.pos:])
		if r < 0 {
			return nil, d.errorf("bad \\u escape")
		}
		d.pos += 4
		if utf16.IsSurrogate(r) {
			if len(d.s)-d.pos >= 6 && d.s[d.pos] == '\\' && d.s[d.pos+1] == 'u' {
				if dec := utf16.DecodeRune(r, hex4(d.s[d.pos+2:])); dec != utf8.RuneError {
					d.pos += 6
					return utf8.AppendRune(b, dec), nil
				}
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(b, r), nil
	}
	return nil, d.errorf("bad escape \\%c", c)
}

// hex4 decodes four hex digits, or returns -1.
func hex4(s string) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range []byte(s[:4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// number returns the text of a JSON number and whether it is an integer.
func (d *tocDecoder) number() (string, bool, error) {
	d.skipSpace()
	s, start := d.s, d.pos
	digits := func() int {
		n := 0
		for d.pos < len(s) && '0' <= s[d.pos] && s[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(s) && s[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(s) && s[d.pos] == '0':
		d.pos++
	case digits() == 0:
		return "", false, d.errorf("want a number")
	}
	integer := true
	if d.pos < len(s) && s[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return "", false, d.errorf("bad number")
		}
		integer = false
	}
	if d.pos < len(s) && (s[d.pos] == 'e' || s[d.pos] == 'E') {
		d.pos++
		if d.pos < len(s) && (s[d.pos] == '+' || s[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return "", false, d.errorf("bad number")
		}
		integer = false
	}
	return s[start:d.pos], integer, nil
}

// int64 decodes an integer field; null leaves *v unchanged.
func (d *tocDecoder) int64(v *int64) error {
	if d.null() {
		return nil
	}
	text, integer, err := d.number()
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if !integer || err != nil {
		return d.errorf("number %s is not a 64-bit integer", text)
	}
	*v = n
	return nil
}

func (d *tocDecoder) int(v *int) error {
	n := int64(*v)
	if err := d.int64(&n); err != nil {
		return err
	}
	if int64(int(n)) != n {
		return d.errorf("number %d does not fit an int", n)
	}
	*v = int(n)
	return nil
}

// string decodes a string field; null leaves *v unchanged.
func (d *tocDecoder) string(v *string) error {
	if d.null() {
		return nil
	}
	s, err := d.str()
	*v = s
	return err
}

// skip skips any value, checking its syntax.
func (d *tocDecoder) skip(depth int) error {
	if depth > maxJSONDepth {
		return d.errorf("nested too deep")
	}
	d.skipSpace()
	if d.pos >= len(d.s) {
		return d.errorf("unexpected end")
	}
	switch c := d.s[d.pos]; c {
	case '"':
		_, err := d.str()
		return err
	case '{':
		d.pos++
		for n := 0; ; n++ {
			_, ok, err := d.nextKey(n)
			if err != nil || !ok {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	case '[':
		d.pos++
		if d.consume(']') {
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if !d.consume(',') {
				return d.expect(']')
			}
		}
	case 't', 'f', 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(d.s)-d.pos >= len(lit) && d.s[d.pos:d.pos+len(lit)] == lit {
				d.pos += len(lit)
				return nil
			}
		}
		return d.errorf("bad literal")
	}
	_, _, err := d.number()
	return err
}

// xattrs decodes the xattrs object, whose values are base64
// (index.DecodeXattr).
func (d *tocDecoder) xattrs(m *map[string][]byte) error {
	if d.null() {
		*m = nil
		return nil
	}
	if err := d.expect('{'); err != nil {
		return err
	}
	if *m == nil {
		*m = map[string][]byte{}
	}
	for n := 0; ; n++ {
		key, ok, err := d.nextKey(n)
		if err != nil || !ok {
			return err
		}
		if d.null() {
			(*m)[key] = nil
			continue
		}
		s, err := d.str()
		if err != nil {
			return err
		}
		v, err := index.DecodeXattr(key, s)
		if err != nil {
			return fmt.Errorf("decode TOC JSON at byte %d: %w", d.pos, err)
		}
		(*m)[key] = v
	}
}

// entry decodes one element of "entries" into e, which must be zero.
func (d *tocDecoder) entry(e *tocEntry) error {
	if d.null() {
		return nil
	}
	if err := d.expect('{'); err != nil {
		return err
	}
	for n := 0; ; n++ {
		key, ok, err := d.nextKey(n)
		if err != nil || !ok {
			return err
		}
		if err := d.field(e, key); err != nil {
			return err
		}
	}
}

func (d *tocDecoder) field(e *tocEntry, key string) error {
	switch key {
	case "name":
		return d.string(&e.Name)
	case "type":
		return d.string(&e.Type)
	case "size":
		return d.int64(&e.Size)
	case "modtime":
		return d.string(&e.ModTime)
	case "linkName":
		return d.string(&e.LinkName)
	case "mode":
		return d.int64(&e.Mode)
	case "uid":
		return d.int(&e.UID)
	case "gid":
		return d.int(&e.GID)
	case "userName":
		return d.string(&e.UserName)
	case "groupName":
		return d.string(&e.GroupName)
	case "offset":
		return d.int64(&e.Offset)
	case "innerOffset":
		return d.int64(&e.InnerOffset)
	case "devMajor":
		return d.int64(&e.DevMajor)
	case "devMinor":
		return d.int64(&e.DevMinor)
	case "xattrs":
		return d.xattrs(&e.Xattrs)
	case "digest":
		return d.string(&e.Digest)
	case "chunkOffset":
		return d.int64(&e.ChunkOffset)
	case "chunkSize":
		return d.int64(&e.ChunkSize)
	case "chunkDigest":
		return d.string(&e.ChunkDigest)
	}
	return d.skip(0)
}
