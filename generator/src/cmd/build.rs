//! `generator build`: [`generator::build::render`], then
//! [`generator::build::write_all`], listing what it wrote.

use std::time::Instant;

use generator::build;

use crate::cli::BuildArgs;

pub(crate) fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let files = build::render(&args.config, args.structure.as_deref())?;
    for removed in build::write_all(&args.out, &files)? {
        println!("  removed {}", removed.display());
    }
    for (name, content) in &files {
        println!(
            "  wrote {} ({} bytes)",
            args.out.join(name).display(),
            content.len()
        );
    }
    println!(
        "built {} files into {} in {} ms",
        files.len(),
        args.out.display(),
        started.elapsed().as_millis()
    );
    Ok(())
}
