//! One small sort for the few lists the gateway orders (a signature's query and headers, the
//! configuration's names, the guard's findings). The standard library's stable sort is about
//! 7 KB of the module for each element type it is used with; this heapsort is a few hundred
//! bytes each: O(n log n) comparisons whatever the input, no allocation, not stable (each
//! caller's order is total, or its ties are equal).

/// Sorts `v` so that no element is `less` than one before it.
pub fn sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, n, &less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &less);
    }
}

/// Sorts `v` in ascending order.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a < b);
}

/// Moves `v[root]` down the max-heap `v[..end]` to where it belongs.
fn sift_down<T>(v: &mut [T], mut root: usize, end: usize, less: &impl Fn(&T, &T) -> bool) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[root], &v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_the_standard_sort_does_any_length_any_order() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in (0..40).chain([100, 257, 1000]) {
            for range in [2, 10, 1_000_000] {
                let v: Vec<u64> = (0..len).map(|_| next() % range).collect();
                let (mut ours, mut std) = (v.clone(), v.clone());
                sort(&mut ours);
                std.sort();
                assert_eq!(ours, std, "len {len}, values below {range}");
            }
        }
        // Strings and pairs, as the signature sorts them; descending by a key.
        let mut pairs = vec![("b".to_string(), "2".to_string()), ("a".into(), "9".into()), ("b".into(), "1".into())];
        sort(&mut pairs);
        assert_eq!(pairs, [("a".into(), "9".into()), ("b".into(), "1".into()), ("b".to_string(), "2".to_string())]);
        let mut desc = vec![3, 1, 2];
        sort_by(&mut desc, |a, b| a > b);
        assert_eq!(desc, [3, 2, 1]);
    }
}
