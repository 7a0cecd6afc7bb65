// SPDX-License-Identifier: Apache-2.0

package index

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type feedEntry struct{ name, link string }

func TestFeed(t *testing.T) {
	var added []string
	errBad := errors.New("bad entry")
	add := func(e feedEntry) error {
		if e.name == "bad" {
			return errBad
		}
		added = append(added, e.name)
		return nil
	}
	names := func(e feedEntry) (string, string) { return e.name, e.link }
	f := NewFeed(t.Context(), names, add)
	for _, n := range []string{"a", "b"} {
		if err := f.Add(feedEntry{name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Add(feedEntry{name: "bad"}); !errors.Is(err, errBad) || !strings.HasPrefix(err.Error(), "TOC entry 2: ") {
		t.Errorf("Add(bad) = %v, want errBad as TOC entry 2", err)
	}
	long := strings.Repeat("x", MaxNameLen+1)
	if err := f.Add(feedEntry{name: "c", link: long}); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), long) {
		t.Errorf("Add(long link) = an error of %d bytes, want ErrInvalid without the name", len(err.Error()))
	}
	if strings.Join(added, ",") != "a,b" {
		t.Errorf("added %v, want a,b (no entry with a bad name reaches add)", added)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f = NewFeed(ctx, names, add)
	if err := f.Add(feedEntry{name: "d"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Add after cancel = %v, want context.Canceled", err)
	}
}
