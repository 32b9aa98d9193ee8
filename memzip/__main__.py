from memzip.cli import main

main()
