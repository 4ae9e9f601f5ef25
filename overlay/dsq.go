package overlay

import dsq "github.com/ipfs/go-datastore/query"

// dsqPrefix is a keys-only datastore query for one prefix.
func dsqPrefix(prefix string) dsq.Query {
	return dsq.Query{Prefix: prefix, KeysOnly: true}
}
