// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// markdown renders the report as Markdown tables.
func (r *report) markdown() string {
	var s strings.Builder
	c := r.Config
	fmt.Fprintf(&s, "Run %s, %d run(s) per cell, WAN %.0f ms one way / %.0f Mbit/s each way, %d CPUs; %s; %s",
		r.Started.Format("2006-01-02 15:04 UTC"), c.Runs, c.DelayMs, c.RateMbit, c.CPUs, c.Store, c.Podman4)
	if c.Podman5 != "" {
		fmt.Fprintf(&s, "; %s (chroot)", c.Podman5)
	}
	fmt.Fprintf(&s, "; whole bench %.0f s.\n\n", r.Seconds)

	if e := r.Emulation; e != nil {
		s.WriteString("Emulation check:\n\n| check | configured | measured |\n|---|---|---|\n")
		fmt.Fprintf(&s, "| ping RTT through the link (median / min of 20) | %.1f ms | %.1f / %.1f ms |\n", 2*e.DelayMs, e.PingMs, e.PingMinMs)
		fmt.Fprintf(&s, "| bulk down, %s | %.0f Mbit/s | %.1f Mbit/s |\n", mib(e.BulkBytes), e.RateMbit, e.DownMbit)
		fmt.Fprintf(&s, "| bulk up, %s | %.0f Mbit/s | %.1f Mbit/s |\n", mib(e.BulkBytes), e.RateMbit, e.UpMbit)
		fmt.Fprintf(&s, "| registry `GET /v2/` (median of 10), proxy vs direct | +%.1f ms | %.1f vs %.1f ms |\n", 2*e.DelayMs, e.HTTPMs, e.HTTPDirectMs)
		if e.BlobBytes > 0 {
			fmt.Fprintf(&s, "| registry blob GET, %s | %.0f Mbit/s | %.1f Mbit/s |\n", mib(e.BlobBytes), e.RateMbit, e.BlobMbit)
		}
		s.WriteString("\n")
	}

	s.WriteString("Images (compressed layer bytes):\n\n| image | workload | gzip | eStargz | optimized | rootfs files |\n|---|---|---|---|---|---|\n")
	for _, img := range r.Images {
		opt := "n/a"
		if img.OPTSize > 0 {
			opt = mib(img.OPTSize)
		}
		wl := strings.Join(img.Workload, " ")
		if img.bigFile != "" {
			wl = "(warm re-read: /" + img.bigFile + ")"
		}
		fmt.Fprintf(&s, "| %s | `%s` | %s | %s | %s | %s |\n", img.Name, wl, mib(img.GZSize), mib(img.ESGZSize), opt, mib(img.RootfsSize))
	}
	s.WriteString("\nCold start (median [min–max] seconds; bytes and requests are medians per run):\n\n")
	s.WriteString("| image | mode | ok/runs | time s | × baseline | down | up | requests | fetched / image | read | fetched / read | fetched / chunks |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.Results {
		if m.OK == 0 {
			note := m.Note
			if note == "" {
				note = "n/a"
			}
			fmt.Fprintf(&s, "| %s | %s | %d/%d | %s | | | | | | | | |\n", m.Image, m.Mode, m.OK, len(m.Runs), note)
			continue
		}
		ratio, read, fr, fc := "1 (baseline)", "", "", ""
		if m.LocalRun > 0 {
			ratio = fmt.Sprintf("1 (run alone: %.2f s)", m.LocalRun)
		}
		if m.FetchedOverChunks > 0 {
			fc = fmt.Sprintf("%.2f", m.FetchedOverChunks)
		}
		if m.RatioToBaseline > 0 {
			ratio = fmt.Sprintf("%.2f", m.RatioToBaseline)
		}
		if m.ReadBytes > 0 {
			read, fr = mib(m.ReadBytes), fmt.Sprintf("%.2f", m.FetchedOverRead)
		}
		fmt.Fprintf(&s, "| %s | %s | %d/%d | %.2f [%.2f–%.2f] | %s | %s | %.0f KiB | %d | %.1f %% | %s | %s | %s |\n",
			m.Image, m.Mode, m.OK, len(m.Runs), m.Median, m.Min, m.Max, ratio, mib(m.BytesDown),
			float64(m.BytesUp)/1024, m.Requests, 100*m.FetchedOfImage, read, fr, fc)
	}
	if w := r.Warm; w != nil {
		s.WriteString("\nWarm re-read (page cache dropped before each read):\n\n| read of " + mib(w.Bytes) + " | MiB/s | fetched |\n|---|---|---|\n")
		fmt.Fprintf(&s, "| through the mount, cold (from the registry) | %.1f | %s |\n", w.ColdMiBs, mib(w.ColdFetched))
		fmt.Fprintf(&s, "| through the mount, warm (store's cache) | %.1f | %s |\n", w.WarmMiBs, mib(w.WarmFetched))
		fmt.Fprintf(&s, "| through the mount after a store restart, first read (verifies the cache) | %.1f | %s |\n", w.RestartedMiBs, mib(w.RestartedFetched))
		fmt.Fprintf(&s, "| through the mount after a store restart, second read | %.1f | |\n", w.RestartedAgainMiBs)
		fmt.Fprintf(&s, "| local disk | %.1f | |\n", w.LocalMiBs)
	}
	s.WriteString("\nTargets:\n\n| target | goal | ours | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		ours, met := "n/a", "n/a"
		if t.Known {
			ours, met = fmt.Sprintf("%.3f", t.Ours), "no"
			if t.Met {
				met = "yes"
			}
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", t.Name, t.Goal, ours, met)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&s, "\nNote: %s\n", n)
	}
	return s.String()
}

// write prints the tables and writes the JSON report to path and the
// Markdown tables beside it.
func (r *report) write(stdout io.Writer, path string) error {
	md := r.markdown()
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, md)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	mdPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".md"
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", path, mdPath)
	return nil
}
