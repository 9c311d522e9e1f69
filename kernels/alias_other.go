//go:build noasm || !amd64

package kernels

// aliasAVX512 is false: this build has no assembly.
const aliasAVX512 = false

// fillAliasOn runs FillAlias on path p; only the generic path exists here.
func fillAliasOn(_ Path, dst []uint16, t *AliasTable, key, first uint64) {
	fillAliasGeneric(dst, t, key, first)
}
