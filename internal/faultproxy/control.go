// SPDX-License-Identifier: Apache-2.0

package faultproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ControlHandler is the proxy's control API, for tests that drive it from
// outside the process (curl in bats):
//
//	POST /fault?mode=M[&match=range|blob|manifest|all][&every=N][&times=N][&after=BYTES][&status=CODE][&multi=KIND]
//	     sets the fault (Fault's fields; modes: status, reset, truncate,
//	     stall, ignore-range, bad-multi; multi: dup-hole, overlap,
//	     missing, garbage, outside)
//	POST /clear                                   no fault
//	POST /cut?kind=refuse|blackhole[&seconds=S]   a cut, for S seconds or until /restore
//	POST /restore                                 end the cut
//	GET  /stats                                   Stats as JSON
//
// Every answer is the Stats after the change, as JSON.
func (p *Proxy) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fault", func(w http.ResponseWriter, r *http.Request) {
		f, err := faultFromQuery(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.Set(f)
		p.writeStats(w)
	})
	mux.HandleFunc("POST /clear", func(w http.ResponseWriter, r *http.Request) {
		p.Clear()
		p.writeStats(w)
	})
	mux.HandleFunc("POST /cut", func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.ParseFloat(cmpStr(r.FormValue("seconds"), "0"), 64)
		if err != nil || secs < 0 {
			http.Error(w, "bad seconds", http.StatusBadRequest)
			return
		}
		if err := p.Cut(Cut(r.FormValue("kind")), time.Duration(secs*float64(time.Second))); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.writeStats(w)
	})
	mux.HandleFunc("POST /restore", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Restore(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p.writeStats(w)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { p.writeStats(w) })
	return mux
}

func (p *Proxy) writeStats(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(p.Stats())
}

func cmpStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// faultFromQuery reads a Fault from the control request's parameters.
func faultFromQuery(r *http.Request) (Fault, error) {
	f := Fault{Mode: Mode(r.FormValue("mode")), Match: Match(r.FormValue("match")), Multi: Multi(r.FormValue("multi"))}
	switch f.Mode {
	case ModeStatus, ModeReset, ModeTruncate, ModeStall, ModeIgnoreRange, ModeBadMulti:
	default:
		return f, fmt.Errorf("unknown mode %q", f.Mode)
	}
	switch f.Match {
	case "", MatchRange, MatchBlob, MatchManifest, MatchAll:
	default:
		return f, fmt.Errorf("unknown match %q", f.Match)
	}
	switch f.Multi {
	case "", MultiDupHole, MultiOverlap, MultiMissing, MultiGarbage, MultiOutside:
	default:
		return f, fmt.Errorf("unknown multi %q", f.Multi)
	}
	for name, dst := range map[string]*int{"every": &f.Every, "times": &f.Times, "status": &f.Status} {
		if v := r.FormValue(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return f, fmt.Errorf("bad %s %q", name, v)
			}
			*dst = n
		}
	}
	if v := r.FormValue("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, fmt.Errorf("bad after %q", v)
		}
		f.After = n
	}
	return f, nil
}
