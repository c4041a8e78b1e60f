use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = sre_mcp::cli::Cli::parse();
    match sre_mcp::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sre-mcp: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
