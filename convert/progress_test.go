// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestProgressLines(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, false)
	b := p.start("layer 1/1 abc")
	b.setPhase("download", 100)
	b.add(50)
	b.finish("-> sha256:x")
	p.printf("wrote %s\n", "dst")
	if got, want := buf.String(), "layer 1/1 abc -> sha256:x\nwrote dst\n"; got != want {
		t.Errorf("plain progress = %q, want %q", got, want)
	}
	var nilp *progress
	nilp.start("x").finish("y") // a nil progress prints nothing and does not panic
	newProgress(nil, true).start("x").add(3)
}

func TestProgressBars(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, true)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			b := p.start("layer " + string(rune('1'+i)))
			b.setPhase("download", 1<<20)
			w := b.writer(&bytes.Buffer{})
			for range 64 {
				w.Write(make([]byte, 16<<10))
			}
			b.setPhase("convert", -1)
			b.finish("done")
		})
	}
	wg.Wait()
	out := buf.String()
	if !strings.Contains(out, "[====================] 1.0 MiB / 1.0 MiB") && !strings.Contains(out, "download") {
		t.Errorf("no bar drawn:\n%q", out)
	}
	if n := strings.Count(out, " done\n"); n != 4 {
		t.Errorf("%d finished lines, want 4:\n%q", n, out)
	}
	if p.drawn != 0 || len(p.live) != 0 {
		t.Errorf("%d lines, %d bars still live after every layer finished", p.drawn, len(p.live))
	}
}
