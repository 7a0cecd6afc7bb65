// SPDX-License-Identifier: Apache-2.0

// Package arch holds no code: its tests check the architecture of the
// module. Packages import only packages of a lower rank (docs/design.md),
// only layerfs and cmd speak FUSE, and every package has a doc comment.
package arch
