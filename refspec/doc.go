// SPDX-License-Identifier: Apache-2.0

// Package refspec parses, normalises and validates image references and
// digests, and encodes a reference as the path element of the Additional
// Layer Store tree.
//
// A [Reference] is a small comparable value: use it as a map key, compare it
// with ==. It is always fully qualified and normalised, in the form
// containers/image hands to containers/storage: "docker.io/library/alpine"
// becomes "docker.io/library/alpine:latest", and a reference carries either a
// tag or a digest, never both (the docker transport refuses both, so
// containers/storage never asks for such a name).
//
// The grammar is not ours: parsing is delegated to
// go.podman.io/image/v5/docker/reference, the same code Podman uses, so a
// name Podman accepts is a name we accept, and vice versa.
//
// # Path elements
//
// containers/storage looks a layer up at <store>/<base64(ref)>/<digest>,
// where base64 is the standard alphabet with '=' padding
// (base64.StdEncoding), applied to the reference's String form.
// [Reference.PathElem] produces exactly that; [FromPathElem] accepts exactly
// that and nothing else: unpadded, URL-safe, newline-broken or otherwise
// non-canonical encodings, and encodings of non-canonical names (for example
// base64("alpine")), are refused, so that one reference has exactly one name
// in the tree and the kernel's dentry cache never holds aliases.
//
// # Errors
//
// Every parse failure wraps [ErrInvalid]. At the FUSE boundary ErrInvalid
// maps to ENOENT: a malformed name can never exist, and ENOENT is the answer
// that makes containers/storage quietly fall back to a normal pull
// (stargz-snapshotter answered EINVAL, which has the same effect but reads
// as a bug in logs).
//
// The package is pure: no I/O, no globals, safe for concurrent use.
package refspec
