// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"fmt"
	"io"
	"sync"
)

// progress serialises lines written to Options.Progress from parallel layer jobs. A nil
// *progress or one without a writer prints nothing.
type progress struct {
	// mu guards the fields below.
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

// printf writes one line; write errors are ignored, progress is best effort.
func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintf(p.w, format, args...)
}
