// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/store/index"
)

// rdDecodeAll decodes a TOC document with tocDecoder into a list.
func rdDecodeAll(s string) (version int64, entries []tocEntry, saw bool, err error) {
	version, saw, err = decodeTOC(&tocDecoder{s: s}, func(e *tocEntry) error {
		entries = append(entries, *e)
		return nil
	})
	return version, entries, saw, err
}

// rdStdDoc is the TOC document as encoding/json sees it.
type rdStdDoc struct {
	Version int64      `json:"version"`
	Entries []tocEntry `json:"entries"`
}

func TestTOCDecoderStrings(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{`"plain"`, "plain", false},
		{`""`, "", false},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", false},
		{`"\u00e9\u4e2d"`, "é中", false},
		{`"\ud83d\ude00"`, "😀", false},
		{`"\ud83d"`, "\ufffd", false},
		{`"\ud83dx"`, "\ufffdx", false},
		{`"\ude00\u0041"`, "\ufffdA", false},
		{"\"caf\xc3\xa9\"", "café", false},
		{"\"bad \xff utf8\"", "bad \ufffd utf8", false},
		{"\"cut \xe4\xb8\"", "cut \ufffd\ufffd", false},
		{`"\x"`, "", true},
		{`"\u12"`, "", true},
		{`"\u12g4"`, "", true},
		{"\"tab\tin string\"", "", true},
		{`"unterminated`, "", true},
		{`"ends in escape\`, "", true},
		{`plain`, "", true},
	}
	for _, tt := range tests {
		d := &tocDecoder{s: tt.in}
		got, err := d.str()
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("str(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
		var std string
		if stdErr := json.Unmarshal([]byte(tt.in), &std); !tt.bad && (stdErr != nil || std != got) {
			t.Errorf("encoding/json decodes %q to %q, %v; str gives %q", tt.in, std, stdErr, got)
		}
	}
}

func TestTOCDecoderNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false}, {"-0", 0, false}, {"42", 42, false}, {"-7", -7, false},
		{"9223372036854775807", 1<<63 - 1, false}, {"-9223372036854775808", -1 << 63, false},
		{"null", 5, false}, // null leaves the field unchanged
		{"9223372036854775808", 0, true}, {"1.5", 0, true}, {"1e3", 0, true}, {"1.0", 0, true},
		{"01", 0, false}, // "0" parses; the trailing "1" is left for the caller to refuse
		{"-", 0, true}, {"+1", 0, true}, {"", 0, true}, {`"1"`, 0, true}, {"1.", 0, true}, {"1e", 0, true},
		{"true", 0, true},
	}
	for _, tt := range tests {
		d := &tocDecoder{s: tt.in}
		got := int64(5)
		err := d.int64(&got)
		if tt.bad != (err != nil) || (!tt.bad && got != tt.want) {
			t.Errorf("int64(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestTOCDecoderDocuments(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth+5) + strings.Repeat("]", maxJSONDepth+5)
	tests := []struct {
		name, in string
		bad      bool
	}{
		{"minimal", `{"version":1,"entries":[]}`, false},
		{"spaces", " \t\r\n{ \"version\" : 1 , \"entries\" : [ { \"name\" : \"a\" } , null ] } \n", false},
		{"unknown fields skipped", `{"x":{"a":[1,2.5e-3,true,false,null,"s",{}]},"version":1,"entries":[{"NumLink":3,"name":"a","z":[[]]}]}`, false},
		{"null fields", `{"version":1,"entries":[{"name":"a","name":null,"xattrs":null,"size":null}]}`, false},
		{"xattrs", `{"version":1,"entries":[{"xattrs":{"user.a":"AAEC","user.b":null,"user.c":""}}]}`, false},
		{"xattr with newline in base64", `{"version":1,"entries":[{"xattrs":{"a":"AA\nEC"}}]}`, false},
		{"null document", `null`, false},
		{"deep nesting", `{"x":` + deep + `}`, true},
		{"entries twice", `{"entries":[],"entries":[]}`, true},
		{"trailing comma", `{"version":1,}`, true},
		{"trailing comma in array", `{"entries":[{},]}`, true},
		{"missing colon", `{"version" 1}`, true},
		{"bad literal", `{"x":nul}`, true},
		{"bad xattr base64", `{"entries":[{"xattrs":{"a":"!!"}}]}`, true},
		{"xattrs not an object", `{"entries":[{"xattrs":[]}]}`, true},
		{"entry not an object", `{"entries":[1]}`, true},
		{"string for a number", `{"entries":[{"size":"1"}]}`, true},
		{"number for a string", `{"entries":[{"name":1}]}`, true},
		{"unterminated", `{"entries":[{}`, true},
		{"garbage after", `{} x`, true},
		{"empty", ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, entries, saw, err := rdDecodeAll(tt.in)
			if (err != nil) != tt.bad {
				t.Fatalf("decodeTOC(%.60q) error = %v, want error %v", tt.in, err, tt.bad)
			}
			if err != nil {
				if !errors.Is(err, index.ErrInvalid) {
					t.Errorf("error %v does not wrap index.ErrInvalid", err)
				}
				return
			}
			rdCompareStd(t, tt.in, v, entries, saw)
		})
	}
}

// rdCompareStd checks a successful decode against encoding/json.
func rdCompareStd(t *testing.T, in string, version int64, entries []tocEntry, saw bool) {
	t.Helper()
	var std rdStdDoc
	if err := json.Unmarshal([]byte(in), &std); err != nil {
		t.Fatalf("tocDecoder accepts %q, encoding/json does not: %v", in, err)
	}
	if saw && std.Entries == nil {
		std.Entries = []tocEntry{}
	}
	if entries == nil && saw {
		entries = []tocEntry{}
	}
	if version != std.Version || !reflect.DeepEqual(entries, std.Entries) {
		t.Fatalf("decode(%q):\n got %d %#v\nwant %d %#v", in, version, entries, std.Version, std.Entries)
	}
}

// rdTOCKeys are the keys tocEntry knows.
var rdTOCKeys = []string{"name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName", "groupName",
	"offset", "innerOffset", "devMajor", "devMinor", "xattrs", "digest", "chunkOffset", "chunkSize", "chunkDigest", "version", "entries"}

// rdMayFoldKeys reports whether encoding/json's case-insensitive key
// matching might apply to in: some spelling of a known key occurs in
// another case, or escapes or folding runes could produce one.
func rdMayFoldKeys(in string) bool {
	if strings.Contains(in, `\u`) || strings.ContainsAny(in, "\u212a\u017f") {
		return true
	}
	lower := strings.ToLower(in)
	for _, k := range rdTOCKeys {
		if q := `"` + k + `"`; strings.Count(lower, strings.ToLower(q)) != strings.Count(in, q) {
			return true
		}
	}
	return false
}

// FuzzTOCJSON checks the TOC decoder against encoding/json: whatever it
// accepts, encoding/json accepts with the same result. Inputs where
// encoding/json's case-insensitive key matching could apply are skipped.
func FuzzTOCJSON(f *testing.F) {
	for _, tt := range rdTOCCases() {
		if b := rdMustJSON(f, map[string]any{"version": 1, "entries": tt.entries}); len(b) < 64<<10 {
			f.Add(string(b))
		}
	}
	for _, tt := range rdRawTOCCases() {
		f.Add(tt.json)
	}
	f.Add(`{"version":1,"entries":[{"name":"a\u00e9\ud83d\ude00","xattrs":{"k":"AAEC"},"size":null}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		v, entries, saw, err := rdDecodeAll(in)
		if err != nil {
			return
		}
		if rdMayFoldKeys(in) {
			return
		}
		rdCompareStd(t, in, v, entries, saw)
	})
}
