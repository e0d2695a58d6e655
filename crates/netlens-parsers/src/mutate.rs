//! For tests: seeded, deterministic damage to good input, the way fuzzers damage it (bits
//! flipped, bytes and length fields set to edge values, ranges cut, repeated or inserted, the
//! input cut short). The hostile-input tests of this crate's parsers, and those of the netlens
//! crate that run them through the store (the Zeek import, replays, .mmdb sets, CSV header
//! checks), run on it within `cargo test`, as the stable-Rust counterpart of cargo-fuzz (fuzz/);
//! the packet crate has its own copy (crates/netlens-packets/tests/mutation.rs), depending on
//! no other crate of netlens. Public (and small) so the netlens crate's tests share it.
//!
//! Touches nothing: bytes in, bytes out.

/// xorshift64*: a fixed stream, so every run tries the same inputs and a failure names its case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// `seed` with one to four of a fuzzer's usual changes.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = [0, 1, b'\t', b'\n', b'"', b'\\', b'-', b';', 0x1b, 0x7f, 0x80, 0xff][rng.below(12)];
            }
            2 if len >= 4 => {
                let at = rng.below(len - 3);
                let value: u32 = [0, 1, 0xffff, 0x7fff_ffff, 0xffff_ffff, len as u32][rng.below(6)];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                data[at..at + 4].copy_from_slice(&bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(256)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len);
                data.splice(to..to, copy);
            }
            5 => {
                // Numbers at the edges of what text fields hold.
                let at = rng.below(len + 1);
                let word = [
                    "18446744073709551615",
                    "-9223372036854775808",
                    "1e308",
                    "inf",
                    "NaN",
                    "-0",
                    "99999999999999999999999",
                    "0.0000000001",
                ][rng.below(8)];
                data.splice(at..at, word.bytes());
            }
            6 => data.truncate(rng.below(len + 1)),
            7 => {
                let at = rng.below(len + 1);
                let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, junk);
            }
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next_u64() as u8;
            }
            _ => {}
        }
    }
    data
}

/// `cases` damaged copies of each seed, with the seed's index and the case's number.
pub fn cases<'a>(seeds: &'a [&'a [u8]], cases: usize) -> impl Iterator<Item = (usize, usize, Vec<u8>)> + 'a {
    seeds.iter().enumerate().flat_map(move |(s, seed)| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (s as u64 + 1));
        (0..cases).map(move |case| (s, case, mutate(seed, &mut rng)))
    })
}
