from cssci_platform.defs.experiment_jobs import experiment_job

report_job = experiment_job("report_job", ["evaluation_report"],
                            "Write the HTML study report of an experiment and log it to MLflow.")
