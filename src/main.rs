use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Dropped last: waits for an ONNX Runtime call still running on the embedding loader
    // thread, so that exit() does not tear the library down under it.
    let _onnx_runtime = sre_mcp::runbooks::embed::CloseOnnxRuntimeOnDrop;
    let cli = sre_mcp::cli::Cli::parse();
    match sre_mcp::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sre-mcp: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
