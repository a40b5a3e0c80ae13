package mpi

// JaroWinkler returns the Jaro-Winkler similarity of two ASCII strings, with the usual
// prefix scale 0.1, a prefix of at most four bytes and a boost threshold of 0.7. It
// allocates nothing: strings longer than 64 bytes are compared on their first 64 bytes.
// Both empty gives 1; one empty gives 0. It equals github.com/xrash/smetrics
// JaroWinkler(a, b, 0.7, 4) on strings of up to 64 bytes.
func JaroWinkler(a, b string) float64 {
	if len(a) > 64 {
		a = a[:64]
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if a == b {
		if a == "" {
			return 1
		}
		return 1
	}
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	la, lb := len(a), len(b)
	mx := la
	if lb > mx {
		mx = lb
	}
	rng := mx/2 - 1
	if rng < 0 {
		rng = 0
	}
	var ma, mb uint64
	matches := 0
	for i := 0; i < la; i++ {
		lo := i - rng
		if lo < 0 {
			lo = 0
		}
		hi := i + rng
		if hi > lb-1 {
			hi = lb - 1
		}
		for j := lo; j <= hi; j++ {
			if mb&(1<<uint(j)) != 0 {
				continue
			}
			if a[i] == b[j] {
				ma |= 1 << uint(i)
				mb |= 1 << uint(j)
				matches++
				break
			}
		}
	}
	if matches == 0 {
		return 0
	}
	unaligned := 0
	j := 0
	for i := 0; i < la; i++ {
		if ma&(1<<uint(i)) == 0 {
			continue
		}
		for mb&(1<<uint(j)) == 0 {
			j++
		}
		if a[i] != b[j] {
			unaligned++
		}
		j++
	}
	m := float64(matches)
	t := float64(unaligned / 2)
	jaro := (m/float64(la) + m/float64(lb) + (m-t)/m) / 3
	if jaro <= 0.7 {
		return jaro
	}
	p := 4
	if la < p {
		p = la
	}
	if lb < p {
		p = lb
	}
	pre := 0
	for pre < p && a[pre] == b[pre] {
		pre++
	}
	return jaro + 0.1*float64(pre)*(1-jaro)
}

// editWithin1 reports whether a and b differ by at most one insertion, deletion,
// substitution or adjacent transposition (restricted Damerau-Levenshtein distance ≤ 1).
func editWithin1(a, b string) bool {
	la, lb := len(a), len(b)
	if la == lb {
		diff := -1
		for i := 0; i < la; i++ {
			if a[i] != b[i] {
				if diff >= 0 {
					// second difference: allow an adjacent transposition
					if i == diff+1 && a[diff] == b[i] && a[i] == b[diff] {
						return a[i+1:] == b[i+1:]
					}
					return false
				}
				diff = i
			}
		}
		return true
	}
	if la-lb == 1 || lb-la == 1 {
		if la < lb {
			a, b = b, a
		}
		i := 0
		for i < len(b) && a[i] == b[i] {
			i++
		}
		return a[i+1:] == b[i:]
	}
	return false
}
