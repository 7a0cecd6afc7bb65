// SPDX-License-Identifier: Apache-2.0

package index

import (
	"context"
	"fmt"
)

// feedCheckEvery is how many TOC entries a Feed hands on between looks at
// its context.
const feedCheckEvery = 1024

// Feed hands a format's TOC entries, one at a time as its decoder meets
// them, to the parser's function that adds them to a Builder. It is the
// part of a TOC parse both formats share: each entry's names are checked
// first (so that no later error quotes a huge one), an error names the
// entry's position ("TOC entry 12: ..."), and every feedCheckEvery entries
// the parse's context is looked at, so that a parse stops when its
// resolve timeout ends. A Feed is used by one goroutine.
type Feed[E any] struct {
	ctx   context.Context
	names func(E) (name, link string)
	add   func(E) error
	n     int
}

// NewFeed returns a Feed that hands entries to add, after checking the
// names (CheckNames) that names reads from each.
func NewFeed[E any](ctx context.Context, names func(E) (name, link string), add func(E) error) *Feed[E] {
	return &Feed[E]{ctx: ctx, names: names, add: add}
}

// Add hands on the next entry.
func (f *Feed[E]) Add(e E) error {
	if f.n%feedCheckEvery == 0 && f.ctx.Err() != nil {
		return f.ctx.Err()
	}
	err := CheckNames(f.names(e))
	if err == nil {
		err = f.add(e)
	}
	if err != nil {
		return f.Err(err)
	}
	f.n++
	return nil
}

// Err names the position of the entry being handed on in err.
func (f *Feed[E]) Err(err error) error { return fmt.Errorf("TOC entry %d: %w", f.n, err) }
