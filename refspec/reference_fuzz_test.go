// SPDX-License-Identifier: Apache-2.0

package refspec

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, tt := range goodRefs {
		f.Add(tt.in)
	}
	for _, tt := range badRefs {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		r2, err := Parse(r.String())
		if err != nil || r2 != r {
			t.Fatalf("Parse(%q) = %v, %v, want %v", r.String(), r2, err, r)
		}
		if r.Named().String() != r.String() {
			t.Fatalf("Named().String() = %q, want %q", r.Named().String(), r.String())
		}
		if (r.Tag() == "") == (r.Digest() == "") {
			t.Fatalf("Parse(%q): tag %q digest %q, want exactly one", s, r.Tag(), r.Digest())
		}
	})
}

func FuzzPathElem(f *testing.F) {
	for _, tt := range goodRefs {
		r, _ := Parse(tt.in)
		f.Add(r.PathElem())
		f.Add(tt.in)
	}
	f.Add("Z2hjci5pby9zdGFyZ3otY29udGFpbmVycy9hbHBpbmU6My4xMC4yLWVzZ3o")
	f.Add("YWxwaW5l\n")
	f.Fuzz(func(t *testing.T, elem string) {
		r, err := FromPathElem(elem)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("FromPathElem(%q) error %v does not wrap ErrInvalid", elem, err)
			}
		} else if r.PathElem() != elem {
			t.Fatalf("FromPathElem(%q).PathElem() = %q: two names for one reference", elem, r.PathElem())
		}
		// Treat the input as a reference too: encode then decode.
		r, err = Parse(elem)
		if err != nil {
			return
		}
		e := r.PathElem()
		if strings.ContainsAny(e, "/\x00") {
			t.Fatalf("PathElem() of %q = %q contains '/' or NUL", r, e)
		}
		r2, err := FromPathElem(e)
		if err != nil || r2 != r {
			t.Fatalf("FromPathElem(%q) = %v, %v, want %v", e, r2, err, r)
		}
	})
}
