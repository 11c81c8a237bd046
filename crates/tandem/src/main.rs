//! `tandem`: local SLM serving (OpenAI-compatible), model management and benchmarks.

mod bench;
mod config;
mod evalreport;
mod evalroute;
mod kb;
mod models;
mod route;
mod routeroutcomes;
mod run;
mod serve;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Local small-model serving with an OpenAI-compatible API, routing to remote LLMs by policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve models over the OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Chat with a model in the terminal (one-shot when PROMPT is given).
    Run(run::RunArgs),
    /// Download a model from the built-in catalog and verify it.
    Pull {
        /// Catalog name (see `tandem catalog`).
        name: String,
    },
    /// List pulled models.
    #[command(alias = "list")]
    Ls,
    /// Show the models Tandem can pull.
    Catalog,
    /// Remove a pulled model.
    Rm {
        /// Catalog name.
        name: String,
    },
    /// Measure prompt and generation speed through the HTTP API.
    Bench(bench::BenchArgs),
    /// Validate or print configurations.
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
    /// Show how a message would be routed (decision, category, PII, every rule tried).
    Route(route::RouteArgs),
    /// Requests, local share, cost and savings from the ledger.
    Stats(stats::StatsArgs),
    /// Create, list and delete knowledge bases.
    Kb {
        #[command(subcommand)]
        cmd: kb::KbCmd,
    },
    /// Add files and folders to a knowledge base (re-run to pick up changes).
    Ingest(kb::IngestArgs),
    /// Search a knowledge base: the best chunks for a question, with their sources.
    Ask(kb::AskArgs),
    /// Train and calibrate the learned router.
    Router {
        #[command(subcommand)]
        cmd: evalreport::RouterCmd,
    },
    /// Evaluate Tandem: RAG modes on a question set, routers on a dataset.
    Eval {
        #[command(subcommand)]
        cmd: EvalCmd,
    },
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Answer a question set from a knowledge base in each RAG mode; report accuracy,
    /// citations, "I don't know" precision, LLM tokens and latency, with a chart.
    Rag(kb::EvalRagArgs),
    /// Build a routing dataset (MMLU, GSM in English and Traditional Chinese, MT-Bench)
    /// from the offline data packages, with a fixed dev/test split.
    Prepare(evalroute::PrepareArgs),
    /// Run a dataset through the SLM alone, the LLM alone and each router over a sweep of
    /// thresholds (answers cached); report PGR, APGR, CPT, cost and a chart.
    Route(evalroute::EvalRouteArgs),
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TANDEM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Run(a) => run::run(a),
        Command::Pull { name } => models::pull(&name),
        Command::Ls => models::list(),
        Command::Catalog => models::show_catalog(),
        Command::Rm { name } => models::remove(&name),
        Command::Bench(a) => bench::run(a),
        Command::Config { cmd } => config::run(cmd),
        Command::Route(a) => route::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Kb { cmd } => kb::run(cmd),
        Command::Ingest(a) => kb::ingest(a),
        Command::Ask(a) => kb::ask(a),
        Command::Router { cmd } => evalreport::run_router(cmd),
        Command::Eval { cmd } => match cmd {
            EvalCmd::Rag(a) => kb::eval_rag(a),
            EvalCmd::Prepare(a) => evalroute::prepare(a),
            EvalCmd::Route(a) => evalroute::eval_route(a),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
