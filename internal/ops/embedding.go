package ops

// ----------------------------------------------------------------------------
// embedding

// Embedding: out[N,H] = table[ids[n], :]. table is [V,H].
func Embedding[F Float](out []F, table Matrix[F], ids []int32, H int) {
	for n, id := range ids {
		table.RowsInto(out[n*H:(n+1)*H], int(id), int(id)+1)
	}
}

// EmbeddingBackward: gradTable[ids[n], :] += gradOut[n, :], in token order.
func EmbeddingBackward[F Float](gradTable, gradOut []F, ids []int32, H int) {
	for n, id := range ids {
		dst := gradTable[int(id)*H : int(id)*H+H]
		for j, g := range gradOut[n*H : n*H+H] {
			dst[j] += g
		}
	}
}
