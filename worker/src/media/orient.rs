//! The eight EXIF orientations (TIFF tag 0x0112), applied to pixels.
//!
//! | value | stored image, to be shown upright |
//! |---|---|
//! | 1 | as is |
//! | 2 | mirrored left–right |
//! | 3 | rotated 180° |
//! | 4 | mirrored top–bottom |
//! | 5 | transposed (mirrored along the top-left → bottom-right diagonal) |
//! | 6 | rotated 90° clockwise |
//! | 7 | transversed (mirrored along the top-right → bottom-left diagonal) |
//! | 8 | rotated 90° counter-clockwise |

use super::Pixels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orientation(u8);

impl Orientation {
    pub const UPRIGHT: Orientation = Orientation(1);

    /// Any value outside 1–8 (or none) means upright.
    pub fn from_exif(value: Option<u32>) -> Orientation {
        match value {
            Some(v @ 1..=8) => Orientation(v as u8),
            _ => Orientation::UPRIGHT,
        }
    }

    /// Whether the upright image's width is the stored image's height.
    pub fn swaps_axes(self) -> bool {
        self.0 >= 5
    }
}

/// Returns the pixels upright.
pub(crate) fn apply(p: Pixels, o: Orientation) -> Pixels {
    match p.channels {
        3 => apply_n::<3>(p, o),
        4 => apply_n::<4>(p, o),
        _ => unreachable!("pixels are RGB or RGBA"),
    }
}

fn apply_n<const N: usize>(mut p: Pixels, o: Orientation) -> Pixels {
    let (w, h) = (p.width as usize, p.height as usize);
    match o.0 {
        2 => {
            for row in p.data.chunks_exact_mut(w * N) {
                mirror_row::<N>(row);
            }
            p
        }
        3 => {
            // Rotating 180° is reversing the order of all pixels.
            mirror_row::<N>(&mut p.data);
            p
        }
        4 => {
            let stride = w * N;
            for y in 0..h / 2 {
                let (top, bottom) = p.data.split_at_mut((h - 1 - y) * stride);
                top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
            }
            p
        }
        5 => transpose::<N>(&p, false, false),
        6 => transpose::<N>(&p, false, true),
        7 => transpose::<N>(&p, true, true),
        8 => transpose::<N>(&p, true, false),
        _ => p,
    }
}

fn mirror_row<const N: usize>(row: &mut [u8]) {
    let n = row.len() / N;
    for i in 0..n / 2 {
        let (a, b) = row.split_at_mut((n - 1 - i) * N);
        a[i * N..i * N + N].swap_with_slice(&mut b[..N]);
    }
}

/// A new image `h` wide and `w` tall whose pixel (x', y') is the source's (sx, sy), with
/// sx = y' (or w-1-y' when `rev_x`) and sy = x' (or h-1-x' when `rev_y`). Done in
/// square tiles, so that the column-wise reads stay in cache.
fn transpose<const N: usize>(p: &Pixels, rev_x: bool, rev_y: bool) -> Pixels {
    const TILE: usize = 64;
    let (w, h) = (p.width as usize, p.height as usize);
    let (out_w, out_h) = (h, w);
    let src = &p.data;
    let mut out = vec![0u8; src.len()];
    for ty in (0..out_h).step_by(TILE) {
        for tx in (0..out_w).step_by(TILE) {
            for y in ty..(ty + TILE).min(out_h) {
                let sx = if rev_x { w - 1 - y } else { y };
                let row = &mut out[y * out_w * N..(y + 1) * out_w * N];
                for x in tx..(tx + TILE).min(out_w) {
                    let sy = if rev_y { h - 1 - x } else { x };
                    let s = (sy * w + sx) * N;
                    row[x * N..x * N + N].copy_from_slice(&src[s..s + N]);
                }
            }
        }
    }
    Pixels { width: out_w as u32, height: out_h as u32, channels: N, data: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 RGB image whose pixels are numbered 1..6 in reading order:
    /// ```text
    /// 1 2 3
    /// 4 5 6
    /// ```
    fn numbered() -> Pixels {
        Pixels { width: 3, height: 2, channels: 3, data: (1..=6u8).flat_map(|v| [v, v, v]).collect() }
    }

    /// Width, height and the pixel numbers in reading order.
    type Layout = (u32, u32, Vec<u8>);

    fn layout(p: &Pixels) -> Layout {
        (p.width, p.height, p.data.chunks_exact(3).map(|px| px[0]).collect())
    }

    #[test]
    fn all_eight_orientations() {
        // Expected upright layouts, from the EXIF specification's definitions.
        let cases: [(u32, Layout); 8] = [
            (1, (3, 2, vec![1, 2, 3, 4, 5, 6])),
            (2, (3, 2, vec![3, 2, 1, 6, 5, 4])),
            (3, (3, 2, vec![6, 5, 4, 3, 2, 1])),
            (4, (3, 2, vec![4, 5, 6, 1, 2, 3])),
            (5, (2, 3, vec![1, 4, 2, 5, 3, 6])),
            (6, (2, 3, vec![4, 1, 5, 2, 6, 3])),
            (7, (2, 3, vec![6, 3, 5, 2, 4, 1])),
            (8, (2, 3, vec![3, 6, 2, 5, 1, 4])),
        ];
        for (value, expected) in cases {
            let o = Orientation::from_exif(Some(value));
            assert_eq!(layout(&apply(numbered(), o)), expected, "orientation {value}");
            assert_eq!(o.swaps_axes(), value >= 5);
        }
    }

    #[test]
    fn out_of_range_is_upright() {
        assert_eq!(Orientation::from_exif(Some(0)), Orientation::UPRIGHT);
        assert_eq!(Orientation::from_exif(Some(9)), Orientation::UPRIGHT);
        assert_eq!(Orientation::from_exif(None), Orientation::UPRIGHT);
    }

    #[test]
    fn large_rotation_matches_naive() {
        // Bigger than a tile in both directions, odd sizes, RGBA.
        let (w, h) = (131usize, 70usize);
        let data: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let p = Pixels { width: w as u32, height: h as u32, channels: 4, data: data.clone() };
        let r = apply(p, Orientation::from_exif(Some(6)));
        assert_eq!((r.width, r.height), (h as u32, w as u32));
        for y in 0..w {
            for x in 0..h {
                let s = ((h - 1 - x) * w + y) * 4;
                let d = (y * h + x) * 4;
                assert_eq!(r.data[d..d + 4], data[s..s + 4]);
            }
        }
    }
}
