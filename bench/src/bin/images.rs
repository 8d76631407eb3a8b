//! Throughput of `worker::media::process` on a 12-megapixel JPEG, on one core, against
//! `vipsthumbnail` (when it is on PATH) making the same outputs from the same file.
//!
//! ```sh
//! cargo run --release -p bench --bin images -- [--runs N] [--no-vips] [--no-record] [--worst-case]
//! ```
//!
//! The process pins itself to one CPU before anything else (so every thread it or its
//! children start shares that core), generates a synthetic photo (gradients, texture and
//! sensor-like noise; 4000×3000, JPEG quality 90, 4:2:0 like a phone's), then:
//!
//! - runs `process` on it N times (after one warm-up run): wall and CPU time per image,
//!   images per second, and where the time went (decode, resize, encode);
//! - if `vipsthumbnail` is found, writes the JPEG to a temp file and, N times, runs
//!   vipsthumbnail once per variant (each width × WebP Q=80 and JPEG Q=82, stripped,
//!   `VIPS_CONCURRENCY=1`), timed the same way, and prints the ratio.
//!
//! Each run appends a dated section to `bench/RESULTS.md` (unless `--no-record`).
//!
//! `--worst-case` also processes the largest files accepted (40 MP: an 8000×5000 JPEG,
//! and an 8000×5000 RGBA PNG), each in a fresh child process, and reports their time
//! and peak memory (maximum resident set size of that process).

use bench::{Machine, append_results, today_utc};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use worker::media::{self, Format, Timings, VARIANT_WIDTHS};

const WIDTH: u32 = 4000;
const HEIGHT: u32 = 3000;

struct Options {
    runs: usize,
    vips: bool,
    record: bool,
    worst_case: bool,
}

fn options() -> Options {
    let mut o = Options { runs: 10, vips: true, record: true, worst_case: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => o.runs = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--runs N (N ≥ 1)"),
            "--no-vips" => o.vips = false,
            "--no-record" => o.record = false,
            "--worst-case" => o.worst_case = true,
            // Internal: the child process of --worst-case.
            "--process-file" => process_file(&PathBuf::from(args.next().expect("--process-file PATH"))),
            other => {
                eprintln!("unknown argument {other}; usage: images [--runs N] [--no-vips] [--no-record] [--worst-case]");
                std::process::exit(2);
            }
        }
    }
    o
}

fn main() {
    let options = options();
    let machine = Machine::read(); // before pinning, which the core count would reflect
    let cpu = pin_to_one_cpu();
    println!("machine: {} ({} cores, load average {}); pinned to CPU {cpu}", machine.cpu, machine.cores, machine.load);

    let t = Instant::now();
    let jpeg = photo_jpeg(WIDTH, HEIGHT);
    println!(
        "input: {WIDTH}×{HEIGHT} JPEG q90 4:2:0, {:.2} MB (generated in {:.1} s)",
        jpeg.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // ---- ours ----
    let warm = media::process(&jpeg, &VARIANT_WIDTHS).expect("the generated JPEG processes");
    let mut ours = Samples::default();
    let mut stages = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        let cpu0 = cpu_time_self();
        let t = Instant::now();
        let (processed, timings) = media::process_timed(&jpeg, &VARIANT_WIDTHS).unwrap();
        ours.push(t.elapsed(), cpu_time_self() - cpu0);
        stages.push(timings);
        std::hint::black_box(processed);
    }
    let stage = median_timings(&stages);
    println!("\nworker::media::process, {} runs (wall per image; CPU time in brackets):", options.runs);
    println!("  median {}  mean {}  min {}  [CPU median {}]", ms(ours.median()), ms(ours.mean()), ms(ours.min()), ms(ours.cpu_median()));
    println!("  {:.2} images/s (median)", 1.0 / ours.median().as_secs_f64());
    println!(
        "  stages (median): probe {}  decode {}  orient {}  resize {}  encode {} (webp {}, jpeg {})",
        ms(stage.probe),
        ms(stage.decode),
        ms(stage.orient),
        ms(stage.resize),
        ms(stage.encode()),
        ms(stage.encode_webp),
        ms(stage.encode_jpeg)
    );
    let sizes: Vec<String> = warm
        .variants
        .iter()
        .map(|v| format!("{}×{} {} {:.0} kB", v.width, v.height, v.format.ext(), v.bytes.len() as f64 / 1e3))
        .collect();
    println!("  outputs: {}", sizes.join(", "));

    // ---- vipsthumbnail ----
    let vips = if options.vips { which("vipsthumbnail") } else { None };
    let vips_result = vips.map(|exe| run_vips(&exe, &jpeg, options.runs));
    match &vips_result {
        Some(v) => {
            println!("\nvipsthumbnail {} (VIPS_CONCURRENCY=1), {} runs of {} invocations (one per output):", v.version, options.runs, v.per_output.len());
            println!("  median {}  mean {}  min {}  [CPU median {}]", ms(v.all.median()), ms(v.all.mean()), ms(v.all.min()), ms(v.all.cpu_median()));
            println!("  {:.2} images/s (median)", 1.0 / v.all.median().as_secs_f64());
            for (label, s, size) in &v.per_output {
                println!("    {label:<18} median {}  ({:.0} kB)", ms(s.median()), *size as f64 / 1e3);
            }
            println!("  one invocation on a 16×16 JPEG (process start-up and teardown): {}", ms(v.startup.median()));
            println!(
                "\nratio vipsthumbnail / ours: {:.2}× wall, {:.2}× CPU  ({})",
                ratio(v.all.median(), ours.median()),
                ratio(v.all.cpu_median(), ours.cpu_median()),
                if v.all.median() > ours.median() { "ours is faster" } else { "vipsthumbnail is faster" }
            );
            println!(
                "  without vipsthumbnail's {} process start-ups: {} per image, ratio {:.2}× wall",
                v.per_output.len(),
                ms(v.without_startup()),
                ratio(v.without_startup(), ours.median())
            );
        }
        None if options.vips => println!("\nvipsthumbnail not on PATH: comparison skipped (Debian: apt-get install libvips-tools)"),
        None => {}
    }

    let worst = options.worst_case.then(worst_cases);
    if let Some(worst) = &worst {
        println!("\nlargest accepted inputs (40 MP), each in a fresh process:");
        for line in worst {
            println!("  {line}");
        }
    }

    if options.record {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
        let mut section = results_section(&machine, cpu, &jpeg, options.runs, &ours, &stage, &sizes, vips_result.as_ref());
        if let Some(worst) = &worst {
            let _ = writeln!(section, "\nLargest accepted inputs (40 MP), each in a fresh process: {}.", worst.join("; "));
        }
        append_results(&path, &section);
        println!("\nappended to {}", path.display());
    }
}

// ---- the synthetic photo --------------------------------------------------------------

/// xorshift32: deterministic, so every run measures the same file.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn hash(x: u32, y: u32, seed: u32) -> f32 {
    let mut h = x.wrapping_mul(0x8DA6_B343) ^ y.wrapping_mul(0xD816_3841) ^ seed.wrapping_mul(0xCB1A_B31F);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5BD1_E995);
    h ^= h >> 15;
    (h & 0xFFFF) as f32 / 65535.0
}

/// Smooth value noise in [0, 1] with cells of `cell` pixels.
fn value_noise(x: u32, y: u32, cell: u32, seed: u32) -> f32 {
    let (cx, cy) = (x / cell, y / cell);
    let (fx, fy) = ((x % cell) as f32 / cell as f32, (y % cell) as f32 / cell as f32);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let a = hash(cx, cy, seed) + (hash(cx + 1, cy, seed) - hash(cx, cy, seed)) * sx;
    let b = hash(cx, cy + 1, seed) + (hash(cx + 1, cy + 1, seed) - hash(cx, cy + 1, seed)) * sx;
    a + (b - a) * sy
}

/// A photo-like image: a sky-to-ground gradient, large soft shapes, mid and fine
/// texture (value noise at three scales) and per-pixel sensor noise, encoded as a
/// camera would (quality 90, 4:2:0).
fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut rng = Rng(0x1234_5678);
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        let v = y as f32 / height as f32;
        for x in 0..width {
            let u = x as f32 / width as f32;
            let shapes = value_noise(x, y, 400, 1) * 0.6 + ((u * 9.0).sin() * (v * 5.0).cos()) * 0.2;
            let texture = value_noise(x, y, 24, 2) * 0.5 + value_noise(x, y, 5, 3) * 0.5;
            let detail = texture * (0.3 + 0.7 * v); // more texture towards the "ground"
            let base = [
                90.0 + 110.0 * (1.0 - v) + 60.0 * shapes,
                120.0 + 70.0 * (1.0 - v) + 50.0 * shapes - 20.0 * u,
                200.0 * (1.0 - v) + 40.0 + 30.0 * shapes,
            ];
            for (c, b) in base.into_iter().enumerate() {
                let noise = (rng.next() % 21) as f32 - 10.0;
                let tint = [50.0, 40.0, 30.0][c];
                rgb.push((b + tint * (detail - 0.5) * 2.0 + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.encode(&rgb, width as u16, height as u16, jpeg_encoder::ColorType::Rgb).expect("encode the synthetic photo");
    out
}

// ---- measuring ------------------------------------------------------------------------

#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, wall: Duration, cpu: Duration) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }
    fn median(&self) -> Duration {
        median(&self.wall)
    }
    fn cpu_median(&self) -> Duration {
        median(&self.cpu)
    }
    fn mean(&self) -> Duration {
        self.wall.iter().sum::<Duration>() / self.wall.len().max(1) as u32
    }
    fn min(&self) -> Duration {
        self.wall.iter().copied().min().unwrap_or_default()
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn median_timings(all: &[Timings]) -> Timings {
    let m = |f: fn(&Timings) -> Duration| median(&all.iter().map(f).collect::<Vec<_>>());
    Timings {
        probe: m(|t| t.probe),
        decode: m(|t| t.decode),
        orient: m(|t| t.orient),
        resize: m(|t| t.resize),
        encode_webp: m(|t| t.encode_webp),
        encode_jpeg: m(|t| t.encode_jpeg),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User + system time of this process, all its threads.
fn cpu_time_self() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User + system time of the children waited for so far.
fn cpu_time_children() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// Pins this process (and so every thread and child it starts later) to the CPU it is
/// running on.
fn pin_to_one_cpu() -> usize {
    // SAFETY: plain libc calls on a zeroed cpu_set_t.
    unsafe {
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut set = std::mem::zeroed::<libc::cpu_set_t>();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("warning: could not pin to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
        cpu
    }
}


// ---- vipsthumbnail --------------------------------------------------------------------

struct VipsResult {
    version: String,
    all: Samples,
    /// Per output: label, timings, size of the file made.
    per_output: Vec<(String, Samples, u64)>,
    startup: Samples,
}

impl VipsResult {
    /// The median per image less one start-up per invocation: what libvips itself took.
    fn without_startup(&self) -> Duration {
        self.all.median().saturating_sub(self.startup.median() * self.per_output.len() as u32)
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

fn vips_command(exe: &Path, input: &Path, width: u32, output: &str) -> Command {
    let mut c = Command::new(exe);
    c.env("VIPS_CONCURRENCY", "1").arg(input).arg("--size").arg(format!("{width}x")).arg("-o").arg(output);
    c
}

fn run_vips(exe: &Path, jpeg: &[u8], runs: usize) -> VipsResult {
    let dir = std::env::temp_dir().join(format!("media-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("photo.jpg");
    std::fs::write(&input, jpeg).unwrap();
    let version = Command::new(exe)
        .arg("--vips-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    let outputs: Vec<(String, u32, String, PathBuf)> = VARIANT_WIDTHS
        .iter()
        .rev()
        .flat_map(|&w| {
            [(Format::Webp, "Q=80,strip"), (Format::Jpeg, "Q=82,strip")].map(|(f, opts)| {
                let path = dir.join(format!("out_{w}.{}", f.ext()));
                (format!("{w} px {}", f.ext()), w, format!("{}[{opts}]", path.display()), path)
            })
        })
        .collect();
    let run_one = |c: &mut Command| {
        let cpu0 = cpu_time_children();
        let t = Instant::now();
        let status = c.status().expect("run vipsthumbnail");
        let wall = t.elapsed();
        assert!(status.success(), "vipsthumbnail failed: {c:?}");
        (wall, cpu_time_children() - cpu0)
    };

    // Warm-up (page cache, shared libraries).
    for (_, w, out, _) in &outputs {
        run_one(&mut vips_command(exe, &input, *w, out));
    }
    let mut all = Samples::default();
    let mut per_output: Vec<(String, Samples, u64)> = outputs.iter().map(|(l, ..)| (l.clone(), Samples::default(), 0)).collect();
    for _ in 0..runs {
        let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
        for (i, (_, w, out, _)) in outputs.iter().enumerate() {
            let (w1, c1) = run_one(&mut vips_command(exe, &input, *w, out));
            per_output[i].1.push(w1, c1);
            wall += w1;
            cpu += c1;
        }
        all.push(wall, cpu);
    }
    for (i, (.., path)) in outputs.iter().enumerate() {
        per_output[i].2 = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    }

    // The fixed cost of one invocation: the same command on a 16×16 JPEG.
    let tiny = dir.join("tiny.jpg");
    let mut tiny_jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut tiny_jpeg, 90).encode(&[128u8; 16 * 16 * 3], 16, 16, jpeg_encoder::ColorType::Rgb).unwrap();
    std::fs::write(&tiny, tiny_jpeg).unwrap();
    let tiny_out = format!("{}[Q=82,strip]", dir.join("tiny_out.jpg").display());
    let mut startup = Samples::default();
    for _ in 0..runs.max(5) {
        let (w, c) = run_one(&mut vips_command(exe, &tiny, 16, &tiny_out));
        startup.push(w, c);
    }

    let _ = std::fs::remove_dir_all(&dir);
    VipsResult { version, all, per_output, startup }
}

// ---- worst case: 40 MP inputs --------------------------------------------------------

/// Writes the largest accepted JPEG and PNG to a temp dir and processes each in a child
/// process (so each peak RSS is its own); one line per case.
fn worst_cases() -> Vec<String> {
    let (w, h) = (8000u32, 5000u32);
    let dir = std::env::temp_dir().join(format!("media-bench-worst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jpeg_path = dir.join("big.jpg");
    std::fs::write(&jpeg_path, photo_jpeg(w, h)).unwrap();
    let png_path = dir.join("big.png");
    std::fs::write(&png_path, rgba_png(w, h)).unwrap();
    let exe = std::env::current_exe().expect("own path");
    let lines = [("8000×5000 JPEG", jpeg_path), ("8000×5000 RGBA PNG", png_path)]
        .into_iter()
        .map(|(label, path)| {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let out = Command::new(&exe).arg("--process-file").arg(&path).output().expect("run child");
            let report = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            format!("{label} ({:.1} MB): {report}", size as f64 / 1e6)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    lines
}

/// The child of [`worst_cases`]: reads the file, processes it once, prints time and
/// peak memory, exits.
fn process_file(path: &Path) -> ! {
    let data = std::fs::read(path).expect("read input");
    let before = max_rss_kb();
    let t = Instant::now();
    let result = media::process(&data, &VARIANT_WIDTHS);
    let took = t.elapsed();
    let peak = max_rss_kb();
    match result {
        Ok(p) => println!(
            "{} in {}, peak RSS {:.0} MB ({:.0} MB before processing, input file included)",
            {
                let mut widths: Vec<String> = p.variants.iter().map(|v| v.width.to_string()).collect();
                widths.dedup();
                widths.join("/") + " px"
            },
            ms(took),
            peak as f64 / 1024.0,
            before as f64 / 1024.0
        ),
        Err(e) => println!("error {e:?} after {}", ms(took)),
    }
    std::process::exit(0)
}

/// This process's peak resident set size (VmHWM, which unlike `ru_maxrss` starts afresh
/// at exec), in kB.
fn max_rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// An RGBA PNG with a soft alpha vignette over the synthetic photo's colours.
fn rgba_png(width: u32, height: u32) -> Vec<u8> {
    let mut rng = Rng(0x0BAD_5EED);
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let (u, v) = (x as f32 / width as f32 - 0.5, y as f32 / height as f32 - 0.5);
            let alpha = (255.0 * (1.0 - 2.0 * (u * u + v * v).sqrt())).clamp(0.0, 255.0) as u8;
            let t = value_noise(x, y, 32, 7);
            let n = (rng.next() % 9) as u8;
            rgba.extend_from_slice(&[(200.0 * t) as u8 + n, (150.0 * (1.0 - t)) as u8 + n, 90 + n, alpha]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("PNG header");
    writer.write_image_data(&rgba).expect("PNG data");
    writer.finish().expect("PNG end");
    out
}

// ---- RESULTS.md -----------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn results_section(
    machine: &Machine,
    cpu: usize,
    jpeg: &[u8],
    runs: usize,
    ours: &Samples,
    stage: &Timings,
    sizes: &[String],
    vips: Option<&VipsResult>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## {} — {} ({} cores), pinned to CPU {cpu}, load average {} at start\n",
        today_utc(),
        machine.cpu,
        machine.cores,
        machine.load
    );
    let _ = writeln!(
        s,
        "Input: synthetic {WIDTH}×{HEIGHT} photo, JPEG q90 4:2:0, {:.2} MB → widths {:?}, WebP q80 + JPEG q82 each. {runs} runs after a warm-up; wall time per image (median), CPU time in brackets.\n",
        jpeg.len() as f64 / 1e6,
        VARIANT_WIDTHS
    );
    let _ = writeln!(s, "| | per image | images/s | CPU per image |");
    let _ = writeln!(s, "|---|---|---|---|");
    let _ = writeln!(s, "| worker::media::process | {} | {:.2} | {} |", ms(ours.median()), 1.0 / ours.median().as_secs_f64(), ms(ours.cpu_median()));
    if let Some(v) = vips {
        let _ = writeln!(
            s,
            "| vipsthumbnail {} ×{} invocations | {} | {:.2} | {} |",
            v.version,
            v.per_output.len(),
            ms(v.all.median()),
            1.0 / v.all.median().as_secs_f64(),
            ms(v.all.cpu_median())
        );
    }
    let _ = writeln!(
        s,
        "\nStages (median): decode {}, orient {}, resize {}, encode {} (WebP {}, JPEG {}), probe {}.",
        ms(stage.decode),
        ms(stage.orient),
        ms(stage.resize),
        ms(stage.encode()),
        ms(stage.encode_webp),
        ms(stage.encode_jpeg),
        ms(stage.probe)
    );
    let _ = writeln!(s, "Outputs: {}.", sizes.join(", "));
    match vips {
        Some(v) => {
            let per: Vec<String> = v.per_output.iter().map(|(l, x, size)| format!("{l} {} ({:.0} kB)", ms(x.median()), *size as f64 / 1e3)).collect();
            let _ = writeln!(s, "vipsthumbnail per output: {}; start-up alone (16×16 input): {}.", per.join(", "), ms(v.startup.median()));
            let _ = writeln!(
                s,
                "\n**Ratio vipsthumbnail / ours: {:.2}× wall, {:.2}× CPU.** Without vipsthumbnail's {} process start-ups: {} per image, {:.2}×.",
                ratio(v.all.median(), ours.median()),
                ratio(v.all.cpu_median(), ours.cpu_median()),
                v.per_output.len(),
                ms(v.without_startup()),
                ratio(v.without_startup(), ours.median())
            );
        }
        None => {
            let _ = writeln!(s, "vipsthumbnail: not on PATH, not compared.");
        }
    }
    s
}


