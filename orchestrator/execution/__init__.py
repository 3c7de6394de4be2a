"""What runs and resumes work: a run's rounds, its services, sweeps, and the API's runs and evaluations.

Nothing here serves HTTP; orchestrator/api/ calls into it (and `selfspec run`/`sweep` do, without the API).

    driver.py           a whole run (rounds, exports, training, hot-loads), idempotent so it resumes
    runner.py           one round's synthesis: the streaming, resumable instruction -> sample loop
    circuit.py          the run's pause while a service stays down (state `paused`), not burning items
    services.py         opens what a run needs from its config: store, generator, retriever, trainer
    evaluated_run.py    the one run path: a driver over open services, executed (or resumed), then evaluated
    session.py          `selfspec run` / `selfspec demo`: open services, drive the run, print what happened
    sweep.py            `selfspec sweep`: a grid of ordinary runs that share work, evaluated together
    sweep_report.py     a finished sweep's table, plot and findings
    review.py           the rules of human review (reject, restore, edit, approve) a round's export honours
    round_card.py       the dataset card an exported round is written with
    estimate.py         what a run will cost, from one probe of its services (also `POST /v1/runs?dry_run`)
    dry_run.py          `selfspec run --dry-run`: start and probe the services, print the estimate
    loop_thread.py      the API's second event loop, on a thread of its own: where runs and their clients live
    run_manager.py      the API's active runs: one task each (owning a run worker), resumed after a restart
    run_worker.py       one API-started run in a process of its own (`-m orchestrator.execution.run_worker`)
    stored_config.py    the config a stored run is driven with: its sections under the server's current ones
    generator_counters.py  the generator client's counters of the API and its run workers, summed for /metrics
    evaluation_jobs.py  evaluations requested over the API, run in the background and resumed after a restart
    (runs, evaluations and trainings are jobs with one lifecycle: selfspec/jobs.py)
    data_dir_lock.py    one API process per data dir, so it alone resumes the runs it finds there
"""
